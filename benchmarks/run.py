"""Benchmarks: our stages against what users would use instead, measured side by side in one run.

    python benchmarks/run.py                 # full sizes (minutes on a CPU)
    python benchmarks/run.py --quick         # reduced sizes, as CI runs it (numbers are indicative only)
    python benchmarks/run.py --smoke-dir DIR # also summarise the per-rule benchmark files of a finished smoke run

Prints a table and writes CSV (default benchmarks/results/<device>.csv). Ratios are ours / theirs
on the same model, images, batch size and device. No assertions: targets are in benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from advdefense.augment import RandomCropFlip  # noqa: E402
from advdefense.classifier import ClassificationObjective  # noqa: E402
from advdefense.data import make_synthetic, write_dataset_h5  # noqa: E402
from advdefense.models import CifarResNet  # noqa: E402
from advdefense.models.autoencoder import ConvAutoencoder, Purified  # noqa: E402
from advdefense.models.glow import Glow  # noqa: E402
from advdefense.training import to_float_pixels  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat: int = 1) -> float:
    """Median wall time of `fn` over `repeat` runs (after one warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ----------------------------------------------------------------------------- 1. training
class TorchvisionStyleCIFAR(torch.utils.data.Dataset):
    """The common recipe: a torchvision-CIFAR10-like dataset of HxWxC uint8 arrays, PIL images and
    torchvision transforms per sample (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor)."""

    def __init__(self, images_nchw: np.ndarray, labels: np.ndarray):
        import torchvision.transforms as T

        self.data = images_nchw.transpose(0, 2, 3, 1).copy()
        self.targets = labels
        self.transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.data[i])), int(self.targets[i])


def bench_training(images, labels, device, batch: int, steps: int, workers: list[int]) -> list[dict]:
    rows = []
    n_img = steps * batch

    def make():
        torch.manual_seed(0)
        model = CifarResNet(20).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
        return model, opt

    # ours: the classifier stage's path (data resident on the device, augmentation on tensors)
    model, opt = make()
    objective = ClassificationObjective(model, RandomCropFlip(4, True))
    x_dev = torch.from_numpy(images).to(device)
    y_dev = torch.from_numpy(labels).to(device)
    gen = torch.Generator().manual_seed(0)

    def ours():
        order = torch.randperm(len(y_dev), generator=gen).to(device)
        for s in range(steps):
            idx = order[(s * batch) % len(y_dev):][:batch]
            loss, _ = objective((x_dev[idx], y_dev[idx]), gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_ours = timed(ours, device)
    rows.append({"benchmark": "train ResNet-20", "variant": "ours (tensors on device)", "images_per_s": n_img / t_ours})

    # theirs: torchvision-style dataset + DataLoader
    for nw in workers:
        model, opt = make()
        loader = torch.utils.data.DataLoader(TorchvisionStyleCIFAR(images, labels), batch_size=batch, shuffle=True,
                                             num_workers=nw, drop_last=True, persistent_workers=nw > 0)

        def theirs():
            it = iter(loader)
            for _ in range(steps):
                x, y = next(it)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        t = timed(theirs, device)
        rows.append({"benchmark": "train ResNet-20", "variant": f"common recipe (PIL + DataLoader, {nw} workers)",
                     "images_per_s": n_img / t})
    best_theirs = max(r["images_per_s"] for r in rows[1:])
    rows[0]["ratio_vs_best_alternative"] = rows[0]["images_per_s"] / best_theirs
    return rows


# ----------------------------------------------------------------------------- 2. attacks
def bench_attacks(images, labels, device, n: int, batch: int, steps: int, eps: float) -> list[dict]:
    import torchattacks

    from advdefense.attacks import run_attack

    torch.manual_seed(0)
    model = CifarResNet(20).to(device).eval()
    spec = {"class": "LinfPGD", "norm": "linf", "epsilons": [eps],
            "params": {"steps": steps, "abs_stepsize": eps / 4, "random_start": True}}
    index = np.arange(n)
    tmp = Path(tempfile.mkdtemp())

    def ours():
        run_attack(model, images, labels, index, "pgd", spec, eps, tmp / "pgd.h5", batch_size=batch, seed=0,
                   device=device, attrs={})

    atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)

    def theirs():
        for s in range(0, n, batch):
            x = to_float_pixels(torch.from_numpy(images[s:s + batch]).to(device))
            y = torch.from_numpy(labels[s:s + batch]).to(device)
            atk(x, y)

    t_ours, t_theirs = timed(ours, device), timed(theirs, device)
    return [
        {"benchmark": f"PGD-{steps} on ResNet-20", "variant": "ours (attack stage: Foolbox + HDF5 output)",
         "images_per_s": n / t_ours, "ratio_vs_best_alternative": t_theirs / t_ours},
        {"benchmark": f"PGD-{steps} on ResNet-20", "variant": "torchattacks.PGD (tensors only)", "images_per_s": n / t_theirs},
    ]


# ----------------------------------------------------------------------------- 3. latents, purification
@torch.inference_mode()
def bench_inference(images, device, n: int, batch: int, glow_size: dict) -> list[dict]:
    torch.manual_seed(0)
    glow = Glow(**glow_size).to(device).eval()
    glow.mark_initialized()
    purifier = Purified(ConvAutoencoder([32, 64]), CifarResNet(20)).to(device).eval()
    x_all = torch.from_numpy(images[:n])

    def latents():
        for s in range(0, n, batch):
            glow(glow.preprocess(to_float_pixels(x_all[s:s + batch].to(device))))

    def purify():
        for s in range(0, n, batch):
            purifier(to_float_pixels(x_all[s:s + batch].to(device))).argmax(1)

    label = f"Glow hidden {glow_size['hidden_channels']}, K {glow_size['K']}, L {glow_size['L']}"
    return [{"benchmark": "latent extraction", "variant": label, "images_per_s": n / timed(latents, device)},
            {"benchmark": "purification", "variant": "autoencoder + ResNet-20", "images_per_s": n / timed(purify, device)}]


# ----------------------------------------------------------------------------- 4. peak memory
MEMORY_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
from advdefense.config import validate_config
stage, data, model, n, out = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
cfg = validate_config({"device": sys.argv[7], "dataset": {"source": "synthetic"}, "classifier": {"depth": 20},
    "attack_defaults": {"images": {"train": n, "test": n}, "batch_size": 250},
    "attacks": {"fgsm": {"class": "FGSM", "norm": "linf", "epsilons": [0.02]}},
    "latents": {"batch_size": 250}})
if torch.cuda.is_available() and cfg["device"] != "cpu":
    torch.cuda.reset_peak_memory_stats()
if stage == "attack":
    from advdefense.attacks import generate_attack_file
    generate_attack_file(data, model, cfg, "fgsm", 0.02, "train", out)
else:
    from advdefense.flow import clean_latents
    clean_latents(data, model, cfg, "train", out)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and cfg["device"] != "cpu" else None
print(json.dumps({"peak_rss_mb": rss, "peak_gpu_mb": gpu}))
"""


def bench_memory(sizes: list[int], device: torch.device, glow_size: dict) -> list[dict]:
    from advdefense.models import save_checkpoint

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data.h5"
    write_dataset_h5(make_synthetic(max(sizes), 10, seed=0), data)
    save_checkpoint(tmp / "classifier.pt", "classifier", CifarResNet(20))
    glow = Glow(**glow_size)
    glow.mark_initialized()
    save_checkpoint(tmp / "flow.pt", "flow", glow)
    rows = []
    for stage, model in (("attack", tmp / "classifier.pt"), ("latents", tmp / "flow.pt")):
        for n in sizes:
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(ROOT / "src"), stage, str(data), str(model),
                                  str(n), str(tmp / f"{stage}{n}.h5"), str(device)],
                                 capture_output=True, text=True, check=True)
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"benchmark": f"peak memory, {stage} stage", "variant": f"{n} images", **mem})
        first, last = rows[-len(sizes)], rows[-1]
        last["ratio_vs_best_alternative"] = last["peak_rss_mb"] / first["peak_rss_mb"]  # memory growth, 1.0 = flat
    return rows


# ----------------------------------------------------------------------------- 5. smoke DAG per rule
def smoke_rule_times(smoke_dir: Path) -> list[dict]:
    import pandas as pd

    rows = []
    for tsv in sorted((smoke_dir / "results/benchmarks").rglob("*.tsv")):
        t = pd.read_csv(tsv, sep="\t")
        rule = tsv.relative_to(smoke_dir / "results/benchmarks").parts[0]
        rows.append({"rule": rule, "seconds": float(t["s"].iloc[0]), "max_rss_mb": float(t["max_rss"].iloc[0])})
    if not rows:
        return []
    per_rule = pd.DataFrame(rows).groupby("rule").agg(jobs=("seconds", "size"), seconds=("seconds", "sum"),
                                                      max_rss_mb=("max_rss_mb", "max"))
    out = [{"benchmark": "smoke DAG", "variant": f"rule {r}", "seconds": v.seconds, "jobs": int(v.jobs),
            "peak_rss_mb": v.max_rss_mb} for r, v in per_rule.iterrows()]
    out.append({"benchmark": "smoke DAG", "variant": "all rules (sum of job wall times)",
                "seconds": float(per_rule["seconds"].sum()), "jobs": int(per_rule["jobs"].sum())})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (CI): checks the benchmark runs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--smoke-dir", type=Path, default=None, help="a finished smoke run to summarise per rule")
    parser.add_argument("--out", type=Path, default=None, help="CSV path")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    n_train = 512 if q else 4096
    ds = make_synthetic(n_train, 10, seed=0)
    images, labels = ds.train.images, ds.train.labels
    glow_size = {"hidden_channels": 64 if q else 512, "K": 4 if q else 32, "L": 3}
    rows = []
    rows += bench_training(images, labels, device, batch=128, steps=3 if q else 24, workers=[0, 2])
    rows += bench_attacks(images, labels, device, n=128 if q else 1024, batch=128 if q else 256,
                          steps=5 if q else 10, eps=0.02)
    big_inference = device.type == "cuda"
    rows += bench_inference(images, device, n=256 if q else (4096 if big_inference else 512),
                            batch=128 if q else 256, glow_size=glow_size)
    # memory: the paper-size Glow on 10k images takes long on a CPU; the growth with N is what matters
    rows += bench_memory([250, 1000] if q else [1000, 10000], device,
                         {"hidden_channels": 32, "K": 2, "L": 3} if q else
                         (glow_size if big_inference else {"hidden_channels": 64, "K": 8, "L": 3}))
    if args.smoke_dir:
        rows += smoke_rule_times(args.smoke_dir)

    import pandas as pd

    table = pd.DataFrame(rows)
    table.insert(0, "device", torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)")
    table.insert(1, "mode", "quick" if q else "full")
    table["torch"] = torch.__version__
    table["python"] = platform.python_version()
    out = args.out or ROOT / "benchmarks" / "results" / f"{device.type}{'-quick' if q else ''}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    shown = [c for c in ("benchmark", "variant", "images_per_s", "ratio_vs_best_alternative", "peak_rss_mb",
                         "peak_gpu_mb", "seconds", "jobs") if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.float_format", "{:.2f}".format):
        print(table[shown].to_string(index=False))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
