"""Agreement check of two AutoAttack implementations on a pipeline's own classifier and images.

The pipeline's AutoAttack stage runs the authors' code (PyPI `pyautoattack`). This script takes one of its attack
files, runs torchattacks' port of AutoAttack (same version, norm and epsilon) on the same classifier and the same
images, and prints the robust accuracy each gives, how many images they judge differently, and whether the
difference is within the tolerance stated in advance (exit status 1 if not). The two share the algorithm, not the
code or the random draws, so a few images may differ; a large gap means one of them is broken.

    python benchmarks/autoattack_agreement.py results/attacks/<run>/autoattack/eps<tag>/test.h5 \\
        results/data/<run>.h5 results/classifier/<run>/model.pt [--tolerance 0.05] [--out agreement.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from advdefense.attack_files import read_attack_file  # noqa: E402
from advdefense.classifier import load_classifier  # noqa: E402
from advdefense.data import read_dataset_h5  # noqa: E402
from advdefense.inference import evaluation_model  # noqa: E402
from advdefense.plan.attack_specs import AUTOATTACK  # noqa: E402
from advdefense.runtime import resolve_device  # noqa: E402

TORCHATTACKS_NORM = {"linf": "Linf", "l2": "L2"}
TORCHATTACKS_VERSIONS = ("standard", "plus", "rand")


def torchattacks_robust(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    norm: str,
    eps: float,
    version: str,
    n_classes: int,
    seed: int,
    batch_size: int,
) -> np.ndarray:
    """Per image: does the classifier still classify torchattacks' AutoAttack adversarial correctly?"""
    import torchattacks

    attack = torchattacks.AutoAttack(
        model, norm=TORCHATTACKS_NORM[norm], eps=eps, version=version, n_classes=n_classes, seed=seed
    )
    robust = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        adv = attack(xb, yb)
        with torch.no_grad():
            robust.append((model(adv).argmax(1) == yb).cpu().numpy())
    return np.concatenate(robust)


def agreement(
    attack_path, dataset_path, classifier_path, *, tolerance: float, batch_size: int, device: str = "auto"
) -> dict:
    a = read_attack_file(attack_path, require=("index", "label", "pred_adv"))
    attrs = a.attrs
    if attrs.get("foolbox_class") != AUTOATTACK:
        raise SystemExit(f"{attack_path}: not an AutoAttack file (class {attrs.get('foolbox_class')!r})")
    params = json.loads(attrs["params"]) if isinstance(attrs["params"], str) else {}
    version = params.get("version", "standard")
    if version not in TORCHATTACKS_VERSIONS:
        raise SystemExit(
            f"{attack_path}: version {version!r}; torchattacks has {', '.join(TORCHATTACKS_VERSIONS)}"
        )
    device = resolve_device(device)
    model = evaluation_model(load_classifier(classifier_path, device), device)
    split = read_dataset_h5(dataset_path).split(attrs["split"])
    x = torch.from_numpy(split.images[a.index].astype(np.float32) / 255.0).to(device)
    y = torch.from_numpy(a.label.astype(np.int64)).to(device)
    with torch.no_grad():
        logits = model(x[:1])
        clean = np.concatenate(
            [
                (model(x[s : s + batch_size]).argmax(1) == y[s : s + batch_size]).cpu().numpy()
                for s in range(0, len(x), batch_size)
            ]
        )
    ours = a.pred_adv == a.label
    t0 = time.perf_counter()
    theirs = torchattacks_robust(
        model,
        x,
        y,
        attrs["norm"],
        float(attrs["epsilon"]),
        version,
        logits.shape[1],
        int(attrs["seed"]),
        batch_size,
    )
    gap = abs(ours.mean() - theirs.mean())
    return {
        "attack_file": str(attack_path),
        "norm": attrs["norm"],
        "epsilon": float(attrs["epsilon"]),
        "version": version,
        "images": len(ours),
        "clean_accuracy": clean.mean(),
        "robust_ours": ours.mean(),
        "robust_torchattacks": theirs.mean(),
        "only_ours_robust": int((ours & ~theirs).sum()),
        "only_torchattacks_robust": int((~ours & theirs).sum()),
        "gap": gap,
        "tolerance": tolerance,
        "agree": bool(gap <= tolerance + 1e-12),
        "torchattacks_seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("attack_file")
    parser.add_argument("dataset")
    parser.add_argument("classifier")
    parser.add_argument(
        "--tolerance", type=float, default=0.05, help="largest robust-accuracy gap (default 0.05)"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", help="append the result to this CSV file")
    args = parser.parse_args(argv)
    row = agreement(
        args.attack_file, args.dataset, args.classifier, tolerance=args.tolerance, batch_size=args.batch_size
    )
    for k, v in row.items():
        print(f"{k:>24}: {v:.4f}" if isinstance(v, float) else f"{k:>24}: {v}")
    if args.out:
        out = Path(args.out)
        pd.DataFrame([row]).to_csv(out, mode="a", header=not out.exists(), index=False)
    return 0 if row["agree"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
