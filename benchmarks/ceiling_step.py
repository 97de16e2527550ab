"""The ceiling of any input pipeline for classifier training: ResNet-20 training steps on a batch that is already
augmented, float and on the device (channels-last, and plain NCHW for comparison), batch 128. No data pipeline can
train faster than this; divided by the common recipe's rate (benchmarks/run.py) it bounds the ratio ours can reach.

    python benchmarks/ceiling_step.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from advdefense.inference import channels_last  # noqa: E402
from advdefense.models import CifarResNet  # noqa: E402


def step_rate(layout_channels_last: bool, batch: int, steps: int, rounds: int) -> list[float]:
    """Images per second of `rounds` rounds of `steps` training steps each, after 3 warm-up steps."""
    torch.manual_seed(0)
    model = CifarResNet(20, 10, 16)
    x = torch.rand(batch, 3, 32, 32)
    if layout_channels_last:
        model = channels_last(model)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {
        name: [round(r, 1) for r in step_rate(cl, args.batch, args.steps, args.rounds)]
        for name, cl in (("channels_last", True), ("nchw", False))
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
