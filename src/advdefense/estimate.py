"""How long a configuration takes on a CPU, per stage, before anything runs.

Each stage's work is counted from the configuration (images x epochs, attack passes, Glow passes ...) and
divided by rates measured on the reference machine: 2 cores of an AMD EPYC (Zen 4, AVX512-BF16), torch 2.14,
2026-12-01, in the full-size run of `config/cifar10-full.yaml` and `benchmarks/run.py` (benchmarks/README.md,
"Full size"). Each job adds its start-up (Python, torch, reading its inputs). Work is scaled by model size
(ResNet depth and width; Glow width, steps and levels; pixel-CNN width) and, linearly, by cores. Two parts depend
on the classifier rather than on the configuration alone, and are modelled on an undefended ResNet-20: how many
DeepFool steps a batch needs and how many images AutoAttack's later sub-attacks still see after APGD-CE.

`advdefense-estimate CONFIG` (what `make run` calls first) prints nothing but a note when a GPU is present; on a
CPU it prints the estimate per stage. `--calibrate` first times a few ResNet-20 training steps here and scales
every rate by this machine's speed relative to the reference machine's.
"""

from __future__ import annotations

import os
import time

from .config import config_from_command_line
from .plan.attack_specs import FOOLBOX, attack_family
from .plan.decisions import (
    CLASSIFIER_RULES,
    adaptive_spec,
    attacked_splits,
    autoattack_results,
    autoencoder_sweep,
    aware_methods,
    corruption_severities,
    corruptions,
    detected_attacks,
    purification_splits,
    purifiers,
    sweep_adaptive,
    sweep_columns,
    trains_autoencoder,
)
from .plan.detector_specs import DETECTORS, FitWork
from .plan.names import run_groups, run_plan
from .plan.purifier_specs import PURIFIERS
from .plan.training_specs import PGD_CURVE_IMAGES, STANDARD, training_spec
from .progress import format_seconds
from .sources import split_sizes

MEASURED_CORES = 2

# ResNet-20 (width 16), images per second
RESNET20_TRAIN = {"float32": 600.0, "bfloat16": 800.0}  # training steps (batch 128, crop + flip)
RESNET20_EVAL = 2300.0  # forward, evaluation copy (batch norm folded)
RESNET20_PASSES = (
    950.0  # forward + backward to the input inside an attack (PGD-40: 22.7 images/s x 42 passes)
)
# Glow, per flow step and level: seconds per image = a + b x hidden^2 (fitted on hidden 64 and 128, checked on 96)
GLOW_TRAIN = (9.73e-5, 1.58e-8)
GLOW_FORWARD = (2.65e-5, 4.67e-9)
GLOW_TRAIN_IN_LOOP = 0.84  # the training loop's rate over the bare step's (dequantisation noise, clipping)
AUTOENCODER_TRAIN = 4700.0  # the paper's autoencoder (32, 64)
AUTOENCODER_EVAL = 15000.0
PURIFY = (
    4000.0  # autoencoder + ResNet-20 forward, written to a file (full-size run: 9000 clean images in 5.7 s)
)
JOB_START = 4.0  # seconds per job: Python, torch and the project's imports, reading its inputs
LIGHT_JOB = 4.0  # tables and figures: start-up and a few seconds of pandas and matplotlib

# making one corrupted image (one corruption at one severity), seconds, measured on 2 cores over the 5 severities
# of 100 CIFAR-10 images; glass blur's pixel shuffle is a Python loop
CORRUPTION_SECONDS = {
    "gaussian_noise": 2e-4,
    "shot_noise": 3e-4,
    "impulse_noise": 3e-4,
    "defocus_blur": 7e-4,
    "glass_blur": 1.8e-2,
    "motion_blur": 1.2e-3,
    "zoom_blur": 4e-3,
    "snow": 1.4e-3,
    "frost": 2e-4,
    "fog": 1.2e-3,
    "brightness": 1.2e-3,
    "contrast": 2e-4,
    "elastic_transform": 1.5e-3,
    "pixelate": 1e-4,
    "jpeg_compression": 3e-4,
    "identity": 1e-5,
}

# work per image, in ResNet forward + backward passes, of one run of an attack
DEEPFOOL_STEPS = 4  # steps a batch needs on an undefended ResNet (every step: one pass per candidate class)

# which rules each stage's jobs belong to (benchmarks/job_table.py sums the measured times the same way)
STAGE_RULES = {
    "dataset": ("dataset",),
    "classifier": tuple(CLASSIFIER_RULES.values()),
    "flow training": ("train_flow", "import_flow"),
    "autoencoder": ("train_autoencoder",),
    "attacks": ("attack", "attack_shard", "merge_attack_shards"),
    "latents": ("latents_clean", "latents_attack"),
    "purification": ("purify_clean", "purify_attack"),
    "adaptive attacks": ("adaptive_attack",),
    "detectors": ("detect", "mmd_test"),
    "corruptions": ("corrupt", "corruption_accuracy"),
    "tables and figures": (
        "attack_summary",
        "table3",
        "detection_tables",
        "corruption_tables",
        "figure_examples",
        "figure_accuracy_eps",
        "figure_auroc_eps",
        "figure_detection",
        "figure_training",
        "seed_table",
        "seed_figure",
        "robustbench_info",
        "reproduction_page",
    ),
}


def _resnet_cost(classifier: dict) -> float:
    """Cost of the configured ResNet relative to ResNet-20 of width 16 (blocks x width^2)."""
    return (classifier["depth"] - 2) / 18 * (classifier["width"] / 16) ** 2


def _glow_seconds(flow: dict, fit: tuple[float, float]) -> float:
    a, b = fit
    return flow["K"] * flow["L"] * (a + b * flow["hidden_channels"] ** 2)


def attack_passes(spec: dict) -> float:
    """Classifier forward + backward passes per image of one attack job (restarts run on the images left)."""
    params = spec.get("params") or {}
    cls = spec["class"]
    family = attack_family(spec)  # Foolbox's classes priced here, another family's by its declaration
    single = _single_run_passes(cls, params) if family.name == FOOLBOX else family.passes(spec)
    restarts = spec.get("restarts", 1)
    return single * (1 + 0.5 * (restarts - 1))


def _single_run_passes(cls: str, params: dict) -> float:
    if cls == "FGSM" or cls.endswith(("FastGradientAttack", "FastGradientMethod")):
        return 3
    if "AdditiveUniformNoise" in cls or "AdditiveGaussianNoise" in cls:  # random noise: no gradient at all
        return 1 + (params.get("repeats", 100) if "Repeated" in cls else 0)
    if "DeepFool" in cls:
        return min(params.get("steps", 50), DEEPFOOL_STEPS) * params.get("candidates", 10) + 2
    if "CarliniWagner" in cls:
        return params.get("binary_search_steps", 9) * params.get("steps", 10000) + 2
    default_steps = {"LinfPGD": 40, "L2PGD": 50, "LinfBasicIterativeAttack": 10, "L2BasicIterativeAttack": 10}
    return params.get("steps", default_steps.get(cls, 50)) + 2


def estimate_seconds(cfg: dict, cores: int | None = None, speed: float = 1.0) -> dict[str, float]:
    """Estimated wall seconds per stage (STAGE_RULES) for the validated configuration `cfg` on `cores` CPU cores,
    `speed` times as fast per core as the reference machine."""
    cores = cores or os.cpu_count() or 1
    scale = MEASURED_CORES / min(cores, 32) / speed
    sizes = split_sizes(cfg["dataset"])
    images = {s: (sizes[s] if n is None else n) for s, n in cfg["attack_defaults"]["images"].items()}
    attacks = cfg["attacks"]
    classifier, resnet = cfg["classifier"], _resnet_cost(cfg["classifier"])
    files = [
        (name, spec, eps, split)
        for name, spec in attacks.items()
        for eps in spec["epsilons"]
        for split in spec["splits"]
    ]
    out = {"dataset": JOB_START + (sizes["train"] + sizes["calibration"] + sizes["test"]) / 8000}

    # classifier: training epochs and the test evaluation after each
    groups = run_groups(cfg)  # one classifier (and everything after it) per training method
    if classifier["source"] == "train":
        rate = RESNET20_TRAIN[classifier.get("precision", "float32")] / resnet
        per_method = []
        for method in groups.values():
            spec = training_spec(method)
            passes = spec.passes(classifier.get(method) or {}) if spec.has_settings else 1.0
            per_epoch = sizes["train"] * passes / rate + sizes["test"] * resnet / RESNET20_EVAL
            if method != STANDARD:  # the curve's PGD-10 accuracy on the first test images
                per_epoch += min(PGD_CURVE_IMAGES, sizes["test"]) * 11 * resnet / RESNET20_PASSES
            per_method.append(
                JOB_START + classifier["epochs"] * per_epoch + sizes["test"] * resnet / RESNET20_EVAL
            )
        out["classifier"] = sum(per_method) / len(groups)  # the mean: every stage is counted once per group
    else:
        out["classifier"] = JOB_START + 30 + sizes["test"] * resnet / RESNET20_EVAL

    # attacks: every (attack, epsilon, split) file; shards add a job each and a merge
    shards = cfg["attack_defaults"]["shards"]
    out["attacks"] = sum(
        images[split] * attack_passes(spec) * resnet / RESNET20_PASSES for _, spec, _, split in files
    )
    out["attacks"] += len(files) * (JOB_START * shards + (LIGHT_JOB if shards > 1 else 0))

    glow_forward = _glow_seconds(cfg["flow"], GLOW_FORWARD)
    detected = detected_attacks(cfg)
    if cfg["latents"]["enabled"]:
        flow = cfg["flow"]
        if flow["source"] == "train":
            train = _glow_seconds(flow, GLOW_TRAIN) / GLOW_TRAIN_IN_LOOP
            out["flow training"] = JOB_START + flow["epochs"] * (
                sizes["train"] * train + sizes["test"] * glow_forward
            )
        else:
            out["flow training"] = JOB_START + sizes["test"] * glow_forward
        latent_files = [(n, s, e, sp) for n, s, e, sp in files if n in detected]
        clean = sum(images[s] for s in attacked_splits(cfg)) + (sizes["calibration"] if detected else 0)
        out["latents"] = (clean + sum(images[sp] for *_, sp in latent_files)) * glow_forward
        out["latents"] += (len(attacked_splits(cfg)) + bool(detected) + len(latent_files)) * JOB_START

    if trains_autoencoder(cfg):
        ae = cfg["autoencoder"]
        out["autoencoder"] = JOB_START + ae["epochs"] * (
            sizes["train"] / AUTOENCODER_TRAIN + sizes["test"] / AUTOENCODER_EVAL
        )

    chosen = purifiers(cfg) if attacks else []
    if chosen:
        splits = purification_splits(cfg)
        purified = [(n, s, e, sp) for n, s, e, sp in files if sp in splits]
        clean = sum(images[s] for s in splits)
        out["purification"] = 0.0
        for p in chosen:
            # PURIFY is the autoencoder's (cost 0.3) + ResNet-20 rate; another purifier's scales with its cost
            rate = PURIFY * 1.3 / (1.0 + PURIFIERS[p].cost)
            out["purification"] += (clean + sum(images[sp] for *_, sp in purified)) / rate
            out["purification"] += (len(splits) + len(purified)) * JOB_START
        adaptive = cfg["purification"]["adaptive"]
        if adaptive["enabled"]:
            n = images["test"] if adaptive["images"] is None else adaptive["images"]
            columns = cfg["tables"]["table3"]["attacks"] or list(attacks)
            seconds = 0.0
            for name in columns:
                spec = adaptive_spec(attacks[name], adaptive["params"].get(name), adaptive["restarts"])
                for p in chosen:
                    # through purifier + classifier: the purifier's passes cost `cost` of a ResNet-20's, each
                    # EOT draw (a random purifier) a pass of both
                    draws = adaptive["eot_samples"] if PURIFIERS[p].random else 1
                    per_image = attack_passes(spec) * draws * (resnet + PURIFIERS[p].cost) / RESNET20_PASSES
                    seconds += len(spec["epsilons"]) * (n * per_image + JOB_START)
            out["adaptive attacks"] = seconds

    sweep = autoencoder_sweep(cfg) if attacks else {}
    if sweep:
        # per point: its training (the rate of the run's autoencoder: the widths change it less than the
        # training length does), its clean test images and sweep columns purified, its adaptive attack
        columns, adaptive = sweep_columns(cfg), sweep_adaptive(cfg)
        seconds = 0.0
        for settings in sweep.values():
            epochs = settings.get("epochs", 0)  # a brought autoencoder is only measured here
            seconds += (
                JOB_START
                + epochs * sizes["train"] / AUTOENCODER_TRAIN
                + (epochs or 1) * (sizes["test"] / AUTOENCODER_EVAL)
            )
            seconds += images["test"] * (1 + len(columns)) / PURIFY + (1 + len(columns)) * JOB_START
            if adaptive is not None:
                ad = cfg["purification"]["adaptive"]
                spec = adaptive_spec(attacks[adaptive[0]], ad["params"].get(adaptive[0]), ad["restarts"])
                n = images["test"] if ad["images"] is None else ad["images"]
                seconds += JOB_START + n * attack_passes(spec) * (resnet + 0.3) / RESNET20_PASSES
        out["autoencoder sweep"] = seconds + LIGHT_JOB

    if detected:
        out["detectors"] = _detection_seconds(cfg, images, sizes, resnet, glow_forward, detected)

    names = corruptions(cfg)
    if names:
        # one file per corruption (every severity), then the classifier alone and through each purifier on the
        # clean images and every corrupted set (the detectors score them inside their own jobs, above)
        n, severities = corrupted_images(cfg, images["test"]), len(corruption_severities(cfg))
        made = sum(CORRUPTION_SECONDS[name] for name in names) * n * severities
        evaluated = n * (1 + len(names) * severities)
        per_image = resnet / RESNET20_EVAL + sum(
            (1.0 + PURIFIERS[p].cost) / (PURIFY * 1.3) for p in purifiers(cfg)
        )
        out["corruptions"] = (len(names) + 1) * JOB_START + made + evaluated * per_image

    out["tables and figures"] = _light_jobs(cfg, detected) * LIGHT_JOB
    runs = len(run_plan(cfg))  # the whole pipeline once per seed and training method
    return {stage: seconds * runs * scale for stage, seconds in out.items() if seconds > 0}


def _detection_seconds(
    cfg: dict, images: dict, sizes: dict, resnet: float, glow_forward: float, detected: list[str]
) -> float:
    """Every detector job: fitting (one model per attack key and one pooled for the supervised ones), the noise
    controls' latents, scoring, the detector-aware attack; and the MMD test."""
    det, attacks = cfg["detection"], cfg["attacks"]
    keys = [(name, eps) for name in detected for eps in attacks[name]["epsilons"]]
    n_eps = len({eps for _, eps in keys})
    n_train, n_test, n_cal = images["train"], images["test"], sizes["calibration"]
    honest = (
        0.9  # share of attacked images that count (changed, clean-correct, fooled) on an undefended ResNet
    )
    # examples per epoch over every model: each key's (clean + its attacked), and the pooled (clean + all attacked)
    examples = len(keys) * n_train * (1 + honest) + n_train * (1 + honest * len(keys))
    noise = len(det["controls"]) * n_eps * n_test
    # the corrupted clean images: their latents made once per flow-based job, scored by one model of each job
    corrupted = corrupted_images(cfg, n_test) * len(corruptions(cfg)) * len(corruption_severities(cfg))
    controls = noise + corrupted
    per_model = n_cal + n_test * (1 + len(keys)) + noise  # what each fitted model scores
    aware = det["aware"]
    targeted = aware_methods(cfg)
    aware_eps = len(aware["epsilons"]) if aware["epsilons"] is not None else n_eps
    n_aware = aware["images"] or n_test
    # PGD rounds (lambda x step rule x restart) on the images still standing: about half of them on average
    # (orthogonal PGD: one round without lambda, two backward passes a step)
    objectives = aware.get("objectives", ["penalty"])
    per_rule = len(aware["lambdas"]) * ("penalty" in objectives) + 2 * ("orthogonal" in objectives)
    rounds = per_rule * len(aware["step_rules"]) * aware["restarts"] * 0.5
    total = 0.0
    for method in det["methods"]:
        cls = DETECTORS[method]
        models = len(keys) + 1 if cls.supervised else 1
        scored = per_model + corrupted / models  # on average per model (`FitWork.scored`)
        work = FitWork(det.get(method) or {}, examples, scored, models, sizes["train"])
        seconds = JOB_START + 5 + cls.fit_seconds(work)
        if cls.on_flow_outputs:
            seconds += controls * glow_forward
        # scoring through other stages' models, by every model the job fits (a supervised detector's LID features,
        # one per key and the pooled one): the autoencoder once, the classifier once per declared copy
        seconds += (
            models
            * scored
            * (
                ("autoencoder" in cls.needs) / AUTOENCODER_EVAL
                + cls.classifier_copies * resnet / RESNET20_EVAL
            )
        )
        if method in targeted:
            # forward + backward per image: the classifier it fools (once, or once per copy its score uses),
            # the autoencoder (about 0.3 of a ResNet-20's), the Glow
            resnet_pass = resnet / RESNET20_PASSES
            pass_cost = resnet_pass * (max(1, cls.classifier_copies) + 0.3 * ("autoencoder" in cls.needs))
            if cls.on_flow_outputs:
                pass_cost += 3 * _glow_seconds(cfg["flow"], GLOW_FORWARD)
            sanity = aware["sanity_images"] * aware["sanity_steps"] * rounds
            seconds += (aware_eps * n_aware * aware["steps"] * rounds + sanity) * pass_cost
            # the gradient-free check: Square's queries are forward passes (a third of a pass each) on the images
            # it has not broken yet (about half of them on average)
            seconds += aware_eps * n_aware * aware.get("square_queries", 0) * 0.5 * pass_cost / 3
        total += seconds
    mmd = det["mmd"]
    if mmd["enabled"]:
        pools = 1 + len(keys)
        total += JOB_START + pools * mmd["trials"] * sum(
            mmd["permutations"] * (2 * b) ** 2 * 2e-8 + 1e-3 for b in mmd["batch_sizes"]
        )
    return total


def corrupted_images(cfg: dict, attacked: int) -> int:
    """How many test images each corruption is made of (`corruptions.images`; null: every attacked one)."""
    n = (cfg.get("corruptions") or {}).get("images")
    return attacked if n is None else min(n, attacked)


def _light_jobs(cfg: dict, detected: list[str]) -> int:
    """Tables and figures of one run: attack summary, Table 3, detection tables, the figures, and a RobustBench
    model_info entry per AutoAttack file of the test split."""
    jobs = 2  # attack summary, training curves
    if cfg["attacks"]:
        jobs += 2 + len(autoattack_results(cfg))  # Figure 1, accuracy versus epsilon, model_info entries
    if purifiers(cfg) and cfg["attacks"]:
        jobs += 1
    if detected:
        jobs += 3  # detection tables, ROC and histograms, AUROC versus epsilon
    if corruptions(cfg):
        jobs += 1  # the corruption tables
    return jobs


def calibrate_speed(steps: int = 6) -> float:
    """This machine's ResNet-20 training speed per core relative to the reference machine's (a few seconds)."""
    import torch
    import torch.nn.functional as F

    from .inference import channels_last
    from .models import CifarResNet

    threads = torch.get_num_threads()
    model = channels_last(CifarResNet(20))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rate = 128 * steps / (time.perf_counter() - start)
    return rate / (RESNET20_TRAIN["float32"] * min(threads, 32) / MEASURED_CORES)


def main(argv: list[str] | None = None) -> int:
    args, cfg = config_from_command_line(
        "advdefense-estimate",
        __doc__.split("\n\n")[0],
        argv,
        {
            "--cpu": "estimate for the CPU even when a GPU is present",
            "--calibrate": "time a few ResNet-20 steps here first and scale the reference rates to this machine",
        },
    )
    if cfg is None:
        return 1
    import torch

    if torch.cuda.is_available() and not args.cpu and cfg["device"] != "cpu":
        print(f"GPU found ({torch.cuda.get_device_name(0)}): the GPU jobs run there.")
        return 0
    speed = calibrate_speed() if args.calibrate else 1.0
    stages = estimate_seconds(cfg, speed=speed)
    total = sum(stages.values())
    where = f"{os.cpu_count()} CPU core(s)" + (
        f", {speed:.2f}x the reference machine's speed" if args.calibrate else ""
    )
    print(f"No GPU: {' + '.join(args.files)} runs on {where}. Estimate: {format_seconds(total)} in all.")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        if seconds >= 1:
            print(f"  {stage:<18} {format_seconds(seconds)}")
    if total > 3600:
        print(
            "Smaller runs: --configfile config/cifar10-full.yaml (all 50 000 images, about 3 h on 2 cores), "
            "config/cifar10-mini.yaml (real CIFAR-10 images, ../shared/data) or config/smoke.yaml (synthetic data, "
            "minutes); `make mini` / `make smoke`."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
