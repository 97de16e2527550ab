"""A rough estimate, before anything runs, of how long a configuration takes on this machine's CPU.

The rates are the ones measured on a 2-core CPU (benchmarks/README.md, 2026-11-24): ResNet-20 training
1180 images/s, Foolbox PGD-10 on ResNet-20 171 images/s (about 12 forward+backward passes an image),
paper-size Glow (512/32/3) latents 12.2 images/s, autoencoder + ResNet-20 purification 3790 images/s.
Work is scaled by model size (ResNet depth and width, Glow width, depth and levels) and by this
machine's cores; attacks count their configured steps. Expect the right order of magnitude, not more.

`advdefense-estimate CONFIG` (what `make run` calls first) prints nothing but a note when a GPU is
present; on a CPU it prints the estimate per stage and how to choose a smaller configuration.
"""
from __future__ import annotations

import os

import torch

from .config import attacked_splits, config_from_command_line, detection_attacks
from .data import split_sizes
from .detectors import REGISTRY
from .progress import format_seconds

MEASURED_CORES = 2
RESNET20_TRAIN_IMAGES_PER_S = 1180.0
RESNET20_PASSES_PER_S = 171.0 * 12  # PGD-10: 10 gradient steps + 2 prediction passes per image
GLOW_PAPER_LATENTS_PER_S = 12.2  # forward only, hidden 512, K 32, L 3
GLOW_TRAIN_COST = 3.0  # a training step (forward + backward) costs about three forward passes
PURIFY_IMAGES_PER_S = 3790.0
SMALL_NET_IMAGES_PER_S = 3000.0  # autoencoder and detector training (measured on the smoke run: 2500-5500)
JOB_START_SECONDS = 4.0  # a Snakemake job's Python, torch and data start-up (smoke run: 38 jobs, ~130 s in all)


def _resnet_cost(classifier: dict) -> float:
    """Cost of the configured ResNet relative to ResNet-20 of width 16 (blocks x width^2)."""
    return (classifier["depth"] - 2) / 18 * (classifier["width"] / 16) ** 2


def _glow_cost(flow: dict) -> float:
    return (flow["hidden_channels"] / 512) ** 2 * flow["K"] * flow["L"] / (32 * 3)


def _attack_passes(spec: dict) -> float:
    """Forward+backward passes of the classifier per image (DeepFool usually stops within ~5 steps)."""
    params = spec.get("params") or {}
    cls = spec["class"]
    if cls == "AutoAttack":
        # APGD-CE (100) on all; on the images it leaves (a third, say) APGD-T (9 x 100), FAB-T (9 x 100 at about
        # two passes each) and Square (5000 forward passes, a third of a backward pass's cost each)
        return 100 + (900 + 1800 + 5000 / 3) / 3
    restarts = spec.get("restarts", 1)
    return _single_run_passes(cls, params) * (1 + 0.5 * (restarts - 1))  # restarts run on the images left


def _single_run_passes(cls: str, params: dict) -> float:
    if cls == "FGSM" or cls.endswith("FastGradientAttack") or cls.endswith("FastGradientMethod"):
        return 3
    if "DeepFool" in cls:
        return min(params.get("steps", 50), 5) * params.get("candidates", 10) + 2
    if "CarliniWagner" in cls:
        return params.get("binary_search_steps", 9) * params.get("steps", 10000) + 2
    default_steps = {"LinfPGD": 40, "L2PGD": 50, "LinfBasicIterativeAttack": 10, "L2BasicIterativeAttack": 10}
    return params.get("steps", default_steps.get(cls, 50)) + 2


def estimate_seconds(cfg: dict, cores: int | None = None) -> dict[str, float]:
    """Estimated CPU seconds per stage for the validated configuration `cfg`."""
    cores = cores or os.cpu_count() or 1
    speedup = min(cores, 32) / MEASURED_CORES
    sizes = split_sizes(cfg["dataset"])
    images = {s: (sizes[s] if n is None else n) for s, n in cfg["attack_defaults"]["images"].items()}
    n_eps = {name: len(spec["epsilons"]) for name, spec in cfg["attacks"].items()}
    # images of every split an attack runs on (`attacks.<name>.splits`), and the attack files over all splits
    attacked_by = {name: sum(images[s] for s in spec["splits"]) for name, spec in cfg["attacks"].items()}
    split_files = sum(n_eps[name] * len(spec["splits"]) for name, spec in cfg["attacks"].items())
    clean = sum(images[s] for s in attacked_splits(cfg))
    out = {}
    classifier = cfg["classifier"]
    out["classifier"] = classifier["epochs"] * sizes["train"] * _resnet_cost(classifier) / RESNET20_TRAIN_IMAGES_PER_S
    out["attacks"] = sum(n_eps[name] * attacked_by[name] * _attack_passes(spec) * _resnet_cost(classifier)
                         for name, spec in cfg["attacks"].items()) / RESNET20_PASSES_PER_S
    attack_files = sum(n_eps.values())
    if cfg["latents"]["enabled"]:
        flow = cfg["flow"]
        glow_rate = GLOW_PAPER_LATENTS_PER_S / _glow_cost(flow)
        if flow["source"] == "train":
            out["flow training"] = flow["epochs"] * sizes["train"] * GLOW_TRAIN_COST / glow_rate
        out["latents"] = (clean + sum(n_eps[n] * attacked_by[n] for n in n_eps)) / glow_rate
    detects = cfg["detection"]["enabled"] and cfg["attacks"]
    if cfg["purification"]["enabled"] or (detects and any("autoencoder" in REGISTRY[m].needs
                                                           for m in cfg["detection"]["methods"])):
        autoencoder = cfg["autoencoder"]
        out["autoencoder"] = autoencoder["epochs"] * sizes["train"] / SMALL_NET_IMAGES_PER_S
    if cfg["purification"]["enabled"]:
        test = images["test"]
        adaptive = cfg["purification"]["adaptive"]
        out["purification"] = test * (1 + attack_files) / PURIFY_IMAGES_PER_S
        if adaptive["enabled"]:
            n = test if adaptive["images"] is None else adaptive["images"]
            out["adaptive attacks"] = sum(n_eps[name] * n * _attack_passes(spec) * (_resnet_cost(classifier) + 0.3)
                                          for name, spec in cfg["attacks"].items()) / RESNET20_PASSES_PER_S
    if cfg["detection"]["enabled"] and cfg["attacks"]:
        detection = cfg["detection"]
        detected = sum(n_eps[name] for name in detection_attacks(cfg))
        per_detector = (detected + 1) * 2 * images["train"]  # clean + attacked images per detector
        epochs = sum(detection[m]["epochs"] for m in ("latent_mlp", "pixel_cnn") if m in detection["methods"])
        out["detectors"] = epochs * per_detector / SMALL_NET_IMAGES_PER_S
    jobs = 4 + split_files + 4  # dataset, classifier, summary, attacks; tables and figures
    if cfg["latents"]["enabled"]:
        jobs += 1 + len(attacked_splits(cfg)) + split_files
    if cfg["purification"]["enabled"]:
        purified = cfg["purification"]["splits"] or attacked_splits(cfg)
        jobs += 2 + attack_files + sum(n_eps[name] * len(set(purified) & set(spec["splits"]))
                                       for name, spec in cfg["attacks"].items())
    if cfg["detection"]["enabled"]:
        jobs += len(cfg["detection"]["methods"]) + 2
    out["job start-up"] = jobs * JOB_START_SECONDS
    runs = len(cfg.get("seeds") or [cfg["seed"]])  # `seeds`: the whole pipeline once per seed
    return {stage: seconds * runs / speedup for stage, seconds in out.items()}


def main(argv: list[str] | None = None) -> int:
    args, cfg = config_from_command_line("advdefense-estimate", __doc__.split("\n\n")[0], argv,
                                         {"--cpu": "estimate for the CPU even when a GPU is present"})
    if cfg is None:
        return 1
    if torch.cuda.is_available() and not args.cpu and cfg["device"] != "cpu":
        print(f"GPU found ({torch.cuda.get_device_name(0)}): the GPU jobs run there.")
        return 0
    stages = estimate_seconds(cfg)
    total = sum(stages.values())
    print(f"No GPU: {' + '.join(args.files)} runs on {os.cpu_count()} CPU core(s). Rough estimate: "
          f"{format_seconds(total)} in all.")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        if seconds >= 1:
            print(f"  {stage:<18} {format_seconds(seconds)}")
    if total > 3600:
        print("Smaller runs: --configfile config/cifar10-mini.yaml (real CIFAR-10 images, ../shared/data) or "
              "--configfile config/smoke.yaml (synthetic data, minutes); `make mini` / `make smoke`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
