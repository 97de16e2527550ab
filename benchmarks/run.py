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

from advdefense.data import make_synthetic, write_dataset_h5  # noqa: E402
from advdefense.inference import to_float_pixels  # noqa: E402
from advdefense.models import CifarResNet  # noqa: E402
from advdefense.models.autoencoder import ConvAutoencoder  # noqa: E402
from advdefense.models.glow import Glow  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeat: int = 1) -> float:
    """Median wall time of `fn` over `repeat` runs (after one warm-up run)."""
    return float(np.median(interleaved({"fn": fn}, device, repeat)["fn"]))


def interleaved(fns: dict, device, rounds: int) -> dict[str, list[float]]:
    """Wall times of each of `fns` over `rounds` rounds, after one warm-up run each. Every round runs
    every variant once, in turn (A B C, A B C, ...), so slow drift of a shared machine (frequency,
    neighbours) affects all variants alike instead of favouring whichever ran in the quiet minute."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def paired_ratio(times: dict[str, list[float]], ours: str, alternatives: list[str]) -> float:
    """Median over rounds of (fastest alternative's time / our time) in the same round."""
    per_round = [min(times[a][r] for a in alternatives) / times[ours][r] for r in range(len(times[ours]))]
    return float(np.median(per_round))


def cpu_model() -> str:
    """The CPU's name, family and model from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        info = dict(
            line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line
        )
    except OSError:
        return platform.processor() or "unknown"
    fields = {k.strip(): v.strip() for k, v in info.items()}
    return f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')})"


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


TRAIN_VARIANTS = {
    "ours": "ours (classifier stage: train_classifier as the pipeline runs it)",
    "ours-no-cl": "ours without channels-last (ablation)",
    "ours-no-malloc": "ours without the malloc setting (ablation)",
    "common0": "common recipe (PIL + DataLoader, 0 workers)",
    "common2": "common recipe (PIL + DataLoader, 2 workers)",
}


def train_child(variant: str, data_path: str, batch: int, device: str, threads: int | None) -> dict:
    """One training-throughput measurement in a fresh process (so per-process settings such as the
    allocator's are measured as the pipeline has them and cannot leak into another variant): two
    epochs over the dataset file's training split, the second one timed."""
    import csv

    from advdefense.config import validate_config
    from advdefense.data import read_dataset_h5
    from advdefense.snakemake_job import keep_freed_memory

    if threads:
        torch.set_num_threads(threads)
    cfg = validate_config(
        {
            "device": device,
            "dataset": {"source": "synthetic"},
            "attack_defaults": {"images": {"train": None, "test": None}},
            "classifier": {"depth": 20, "epochs": 2, "batch_size": batch, "eval_batch_size": 500},
        }
    )
    c = cfg["classifier"]
    if variant.startswith("ours"):
        import advdefense.classifier as stage
        from advdefense.classifier import train_classifier

        if variant != "ours-no-malloc":
            keep_freed_memory()  # what snakemake_job.run_script does for every pipeline job
        if variant == "ours-no-cl":
            stage.channels_last = lambda model: model
        tmp = Path(tempfile.mkdtemp())
        train_classifier(
            data_path,
            c,
            cfg["seed"],
            tmp / "model.pt",
            tmp / "metrics.json",
            tmp / "epochs.csv",
            tmp / "state.pt",
            device=device,
            eval_batch_size=c["eval_batch_size"],
        )
        with open(tmp / "epochs.csv") as fh:
            return {"images_per_s": float(list(csv.DictReader(fh))[-1]["train_images_per_s"])}

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    ds = read_dataset_h5(data_path)
    torch.manual_seed(cfg["seed"])
    model = CifarResNet(20).to(dev)
    o = c["optimizer"]
    opt = torch.optim.SGD(
        model.parameters(),
        lr=o["lr"],
        momentum=o["momentum"],
        nesterov=o["nesterov"],
        weight_decay=o["weight_decay"],
    )
    workers = int(variant.removeprefix("common"))
    loader = torch.utils.data.DataLoader(
        TorchvisionStyleCIFAR(ds.train.images, ds.train.labels),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    seconds = 0.0
    for _epoch in range(2):
        model.train()
        sync(dev)
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(dev)
        seconds = time.perf_counter() - t0
    return {"images_per_s": len(ds.train.labels) / seconds}


def bench_training(device, batch: int, steps: int, rounds: int, threads: int | None) -> list[dict]:
    """Our classifier stage (`train_classifier`: uint8 data on the device, crop + flip on tensors, the
    `fit` loop, channels-last, the pipeline's malloc setting) against the common recipe on the same
    ResNet-20, optimiser, batch and device, each measurement in its own process, the variants
    interleaved round by round; plus two ablations of ours, to show where the gain comes from."""
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data.h5"
    write_dataset_h5(make_synthetic(steps * batch, 100, seed=0), data)
    ips: dict[str, list[float]] = {k: [] for k in TRAIN_VARIANTS}
    for _ in range(rounds):
        for variant in TRAIN_VARIANTS:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--train-child",
                variant,
                str(data),
                str(batch),
                str(device),
                str(threads or 0),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"training benchmark {variant} failed:\n{out.stderr[-3000:]}")
            ips[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"])
    rows = []
    for key, values in ips.items():
        row = {
            "benchmark": "train ResNet-20",
            "variant": TRAIN_VARIANTS[key],
            "images_per_s": float(np.median(values)),
        }
        if key.startswith("ours"):  # per round: ours / the faster common recipe of that round
            row["ratio_vs_best_alternative"] = float(
                np.median([values[r] / max(ips["common0"][r], ips["common2"][r]) for r in range(rounds)])
            )
            row["ratio_per_round"] = " ".join(
                f"{values[r] / max(ips['common0'][r], ips['common2'][r]):.2f}" for r in range(rounds)
            )
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- 2. attacks
def bench_attacks(
    images, labels, device, n: int, batch: int, steps: int, eps: float, rounds: int
) -> list[dict]:
    import torchattacks

    from advdefense.attacks import run_attack
    from advdefense.plan.jobs import AttackJob

    torch.manual_seed(0)
    model = CifarResNet(20).to(device).eval()
    spec = {
        "class": "LinfPGD",
        "norm": "linf",
        "epsilons": [eps],
        "params": {"steps": steps, "abs_stepsize": eps / 4, "random_start": True},
    }
    index = np.arange(n)
    tmp = Path(tempfile.mkdtemp())

    def ours():
        run_attack(
            model,
            images[:n],
            labels[:n],
            index,
            AttackJob(name="pgd", spec=spec, eps=eps, seed=0, batch_size=batch),
            tmp / "pgd.h5",
            device=device,
            attrs={},
        )

    atk = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True)

    def theirs():
        for s in range(0, n, batch):
            x = to_float_pixels(torch.from_numpy(images[s : s + batch]).to(device))
            y = torch.from_numpy(labels[s : s + batch]).to(device)
            atk(x, y)

    times = interleaved({"ours": ours, "torchattacks": theirs}, device, rounds)
    return [
        {
            "benchmark": f"PGD-{steps} on ResNet-20",
            "variant": "ours (attack stage: Foolbox, evaluation copy, HDF5 output)",
            "images_per_s": n / float(np.median(times["ours"])),
            "ratio_vs_best_alternative": paired_ratio(times, "ours", ["torchattacks"]),
            "ratio_per_round": " ".join(f"{b / a:.2f}" for a, b in zip(times["ours"], times["torchattacks"])),
        },
        {
            "benchmark": f"PGD-{steps} on ResNet-20",
            "variant": "torchattacks.PGD (tensors only, no output)",
            "images_per_s": n / float(np.median(times["torchattacks"])),
        },
    ]


def bench_autoattack(
    images, labels, device, n: int, batch: int, rounds: int, params: dict, eps: float, labels_from: str
) -> list[dict]:
    """Our AutoAttack stage (run_attack: per-batch loop over the package's sub-attacks, HDF5 output) against the
    package's own run_standard_evaluation on the same model, images and batch size, and the robust accuracy each
    gives.

    `labels_from`: "model" labels every image with the random network's own prediction, so every image starts
    classified correctly and APGD-CE runs on full batches, as it does for a trained classifier (about 90 % of a
    batch); "dataset" keeps the synthetic labels, which the random network gets right for about 1 image in 10,
    so the sub-attacks run on a few images per batch and fixed costs per batch dominate."""
    from pyautoattack import AutoAttack

    from advdefense.attacks import run_attack
    from advdefense.inference import evaluation_model
    from advdefense.plan.jobs import AttackJob

    torch.manual_seed(0)
    model = CifarResNet(20).to(device).eval()
    net = evaluation_model(model, device)  # what the stage attacks
    spec = {"class": "AutoAttack", "norm": "linf", "epsilons": [eps], "params": params}
    index = np.arange(n)
    tmp = Path(tempfile.mkdtemp())
    x = to_float_pixels(torch.from_numpy(images[:n]).to(device))
    if labels_from == "model":
        with torch.no_grad():
            labels = np.concatenate(
                [net(x[i : i + batch]).argmax(1).cpu().numpy() for i in range(0, n, batch)]
            ).astype(np.int64)
    elif labels_from != "dataset":
        raise ValueError(f"labels_from: {labels_from!r} is not 'model' or 'dataset'")
    y = torch.from_numpy(labels[:n].astype(np.int64)).to(device)
    result = {}

    def ours():
        result["ours"] = run_attack(
            model,
            images[:n],
            labels[:n],
            index,
            AttackJob(name="autoattack", spec=spec, eps=eps, seed=0, batch_size=batch),
            tmp / "aa.h5",
            device=device,
            attrs={},
        )["robust_accuracy"]

    def package():
        version = params.get("version", "standard")
        adversary = AutoAttack(
            net,
            norm="Linf",
            eps=eps,
            version=version,
            device=device,
            seed=0,
            attacks=params.get("attacks") if version == "custom" else None,
        )
        adversary.verbose = False
        adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch)
        with torch.no_grad():
            result["package"] = float((net(adv).argmax(1) == y).float().mean())

    times = interleaved({"ours": ours, "package": package}, device, rounds)
    label = f"AutoAttack {params.get('version')} {' '.join(params.get('attacks', []))} on ResNet-20".replace(
        "  ", " "
    ) + (", labels = its predictions" if labels_from == "model" else ", synthetic labels")
    return [
        {
            "benchmark": label,
            "variant": "ours (attack stage: per-batch sub-attacks, HDF5 output)",
            "images_per_s": n / float(np.median(times["ours"])),
            "robust_accuracy": result["ours"],
            "ratio_vs_best_alternative": paired_ratio(times, "ours", ["package"]),
            "ratio_per_round": " ".join(f"{b / a:.2f}" for a, b in zip(times["ours"], times["package"])),
        },
        {
            "benchmark": label,
            "variant": "pyautoattack run_standard_evaluation (tensors only, no output)",
            "images_per_s": n / float(np.median(times["package"])),
            "robust_accuracy": result["package"],
        },
    ]


# ----------------------------------------------------------------------------- 3. latents, purification
@torch.inference_mode()
def bench_inference(images, device, n: int, batch: int, glow_size: dict) -> list[dict]:
    torch.manual_seed(0)
    glow = Glow(**glow_size).to(device).eval()
    glow.mark_initialized()
    from advdefense.inference import evaluation_model
    from advdefense.purifiers import Defended

    purifier = evaluation_model(
        Defended(ConvAutoencoder([32, 64]), CifarResNet(20)), device
    )  # as the stage runs it
    x_all = torch.from_numpy(images[:n])

    def latents():
        for s in range(0, n, batch):
            glow(glow.preprocess(to_float_pixels(x_all[s : s + batch].to(device))))

    def purify():
        for s in range(0, n, batch):
            purifier(to_float_pixels(x_all[s : s + batch].to(device))).argmax(1)

    label = f"Glow hidden {glow_size['hidden_channels']}, K {glow_size['K']}, L {glow_size['L']}"
    return [
        {"benchmark": "latent extraction", "variant": label, "images_per_s": n / timed(latents, device)},
        {
            "benchmark": "purification",
            "variant": "autoencoder + ResNet-20",
            "images_per_s": n / timed(purify, device),
        },
    ]


# ----------------------------------------------------------------------------- 4. peak memory
MEMORY_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
stage, data, model, n, out, device = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
if torch.cuda.is_available() and device != "cpu":
    torch.cuda.reset_peak_memory_stats()
def rss_mb(field):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith(field + ":")) / 1024
import foolbox, h5py  # imported before the reset: library code is not the stage's memory
from advdefense.snakemake_job import keep_freed_memory
keep_freed_memory()  # as every pipeline job runs
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
start = rss_mb("VmRSS")
if stage == "attack":
    from advdefense.attacks import generate_attack_file
    from advdefense.plan.jobs import AttackJob
    job = AttackJob(name="fgsm", spec={"class": "FGSM", "norm": "linf", "params": {}}, eps=0.02, split="train",
                    images=n, seed=0, batch_size=250)
    generate_attack_file(data, model, job, out, device=device)
elif stage == "merge":  # `model` names the shard files here
    from advdefense.attack_files import merge_attack_shards
    merge_attack_shards(json.loads(model), out)
else:
    from advdefense.flow import clean_latents
    clean_latents(data, model, "train", out, images=n, seed=0, device=device, batch_size=250)
gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and device != "cpu" else None
print(json.dumps({"peak_rss_mb": rss_mb("VmHWM"), "stage_peak_mb": rss_mb("VmHWM") - start, "peak_gpu_mb": gpu,
                  "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_memory(sizes: list[int], device: torch.device, glow_size: dict) -> list[dict]:
    from advdefense.attacks import generate_attack_file
    from advdefense.models import save_checkpoint
    from advdefense.plan.jobs import AttackJob

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data.h5"
    write_dataset_h5(make_synthetic(max(sizes), 10, seed=0), data)
    save_checkpoint(tmp / "classifier.pt", "classifier", CifarResNet(20))
    glow = Glow(**glow_size)
    glow.mark_initialized()
    save_checkpoint(tmp / "flow.pt", "flow", glow)
    rows = []
    shards = {}  # merge stage: 4 shards of an FGSM job of n images, made beforehand (not measured)
    for n in sizes:
        shards[n] = [str(tmp / f"shard{n}_{k}.h5") for k in range(4)]
        for k, path in enumerate(shards[n]):
            generate_attack_file(
                data,
                tmp / "classifier.pt",
                AttackJob(
                    name="fgsm",
                    spec={"class": "FGSM", "norm": "linf", "params": {}},
                    eps=0.02,
                    split="train",
                    images=n,
                    seed=0,
                    batch_size=max(1, n // 8),
                    shard=(k, 4),
                ),
                path,
                device=str(device),
            )
    for stage, model in (("attack", tmp / "classifier.pt"), ("latents", tmp / "flow.pt"), ("merge", None)):
        for n in sizes:
            what = json.dumps(shards[n]) if stage == "merge" else str(model)
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MEMORY_CHILD,
                    str(ROOT / "src"),
                    stage,
                    str(data),
                    what,
                    str(n),
                    str(tmp / f"{stage}{n}.h5"),
                    str(device),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            name = "merging 4 attack shards" if stage == "merge" else f"{stage} stage"
            rows.append({"benchmark": f"peak memory, {name}", "variant": f"{n} images", **mem})
        first, last = rows[-len(sizes)], rows[-1]
        last["ratio_vs_best_alternative"] = (
            last["peak_rss_mb"] / first["peak_rss_mb"]
        )  # memory growth, 1.0 = flat
    return rows


# ----------------------------------------------------------------------------- 5. smoke DAG per rule
def smoke_rule_times(smoke_dir: Path) -> list[dict]:
    import pandas as pd

    rows = []
    for tsv in sorted((smoke_dir / "results/benchmarks").rglob("*.tsv")):
        t = pd.read_csv(tsv, sep="\t")
        rule = tsv.relative_to(smoke_dir / "results/benchmarks").parts[0]
        rows.append(
            {"rule": rule, "seconds": float(t["s"].iloc[0]), "max_rss_mb": float(t["max_rss"].iloc[0])}
        )
    if not rows:
        return []
    per_rule = (
        pd.DataFrame(rows)
        .groupby("rule")
        .agg(jobs=("seconds", "size"), seconds=("seconds", "sum"), max_rss_mb=("max_rss_mb", "max"))
    )
    out = [
        {
            "benchmark": "smoke DAG",
            "variant": f"rule {r}",
            "seconds": v.seconds,
            "jobs": int(v.jobs),
            "peak_rss_mb": v.max_rss_mb,
        }
        for r, v in per_rule.iterrows()
    ]
    out.append(
        {
            "benchmark": "smoke DAG",
            "variant": "all rules (sum of job wall times)",
            "seconds": float(per_rule["seconds"].sum()),
            "jobs": int(per_rule["jobs"].sum()),
        }
    )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (CI): checks the benchmark runs")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument(
        "--train-child", nargs=5, help=argparse.SUPPRESS
    )  # internal: one training measurement
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved timing rounds per comparison (full mode)"
    )
    parser.add_argument(
        "--smoke-dir", type=Path, default=None, help="a finished smoke run to summarise per rule"
    )
    parser.add_argument("--out", type=Path, default=None, help="CSV path")
    args = parser.parse_args(argv)
    if args.train_child:
        variant, data, batch, dev, threads = args.train_child
        print(json.dumps(train_child(variant, data, int(batch), dev, int(threads))))
        return 0
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    n_train = 512 if q else 4096
    ds = make_synthetic(n_train, 10, seed=0)
    images, labels = ds.train.images, ds.train.labels
    glow_size = {"hidden_channels": 64 if q else 512, "K": 4 if q else 32, "L": 3}
    rows = []
    rounds = 1 if q else args.rounds
    rows += bench_training(device, batch=128, steps=3 if q else 24, rounds=rounds, threads=args.threads)
    rows += bench_attacks(
        images,
        labels,
        device,
        n=128 if q else 1024,
        batch=128 if q else 256,
        steps=5 if q else 10,
        eps=0.02,
        rounds=rounds,
    )
    # labelled by its own predictions, a random ResNet starts right on every image, as a trained one does on most:
    # APGD-CE runs on full batches (the stage's main case); with the synthetic labels it starts right on about
    # 1 image in 10 and per-batch fixed costs dominate (full mode only)
    for labels_from in ["model"] if q else ["model", "dataset"]:
        rows += bench_autoattack(
            images,
            labels,
            device,
            n=16 if q else 256,
            batch=16 if q else 128,
            rounds=rounds,
            params={"version": "custom", "attacks": ["apgd-ce", "apgd-t"]} if q else {"version": "standard"},
            eps=8 / 255,
            labels_from=labels_from,
        )
    big_inference = device.type == "cuda"
    rows += bench_inference(
        images,
        device,
        n=256 if q else (4096 if big_inference else 512),
        batch=128 if q else 256,
        glow_size=glow_size,
    )
    # memory: the paper-size Glow on 10k images takes long on a CPU; the growth with N is what matters
    rows += bench_memory(
        [250, 1000] if q else [1000, 10000],
        device,
        {"hidden_channels": 32, "K": 2, "L": 3}
        if q
        else (glow_size if big_inference else {"hidden_channels": 64, "K": 8, "L": 3}),
    )
    if args.smoke_dir:
        rows += smoke_rule_times(args.smoke_dir)

    import pandas as pd

    table = pd.DataFrame(rows)
    table.insert(
        0,
        "device",
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
    )
    table.insert(1, "mode", "quick" if q else "full")
    table["cpu"] = cpu_model()  # the ratios differ between CPUs (benchmarks/README.md)
    table["torch"] = torch.__version__
    table["python"] = platform.python_version()
    out = args.out or ROOT / "benchmarks" / "results" / f"{device.type}{'-quick' if q else ''}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    shown = [
        c
        for c in (
            "benchmark",
            "variant",
            "images_per_s",
            "robust_accuracy",
            "ratio_vs_best_alternative",
            "ratio_per_round",
            "peak_rss_mb",
            "stage_peak_mb",
            "peak_gpu_mb",
            "seconds",
            "jobs",
        )
        if c in table.columns
    ]
    with pd.option_context(
        "display.width", 200, "display.max_colwidth", 60, "display.float_format", "{:.2f}".format
    ):
        print(table[shown].to_string(index=False))
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
