"""Decisions: what a validated configuration makes, computed once.

Which splits are attacked, which attacks the detectors learn, which detectors the detector-aware attack
targets, which models a detector job loads, which models a run trains, which tables the seeds gather: the
rules (`common.smk`), the config checks, the estimate and the stages all ask here instead of deciding again.
Torch-free. Every function takes a configuration validated by `advdefense.config.validate_config`.
"""

from __future__ import annotations

from pathlib import Path

from .attack_specs import attack_family, gradient_free
from .corruption_specs import is_cifar10c
from .detector_specs import DETECTORS
from .names import is_runtime_key, robustbench_zoo_file
from .purifier_specs import PURIFIERS, sweep_purifier

# dataset.source -> the `dataset` keys of that source that decide the dataset file (beside the subset sizes)
SOURCES = {
    "cifar10": ("root",),
    "cifar100": ("root", "labels"),
    "local": ("path", "labels"),
    "synthetic": ("synthetic",),
}


# classifier.source -> the rule that makes the run's classifier
CLASSIFIER_RULES = {
    "train": "train_classifier",
    "checkpoint": "import_classifier",
    "robustbench": "import_robustbench",
}


def robustbench_dataset(cfg: dict) -> str:
    """The RobustBench data set of the run's images: cifar100 for CIFAR-100, else cifar10 (the CIFAR-10
    layouts and the synthetic set, which has its 10 classes)."""
    return "cifar100" if cfg["dataset"]["source"] == "cifar100" else "cifar10"


def robustbench_checkpoint(cfg: dict) -> Path:
    """Where RobustBench keeps the checkpoint of `classifier.robustbench` (it downloads it there if absent)."""
    zoo = cfg["classifier"]["robustbench"]
    return robustbench_zoo_file(zoo["model_dir"], robustbench_dataset(cfg), zoo["threat_model"], zoo["name"])


def classifier_architecture(cfg: dict) -> str | None:
    """The architecture of a classifier trained here, as RobustBench's entries name them ("ResNet-20",
    "ResNet-20 (width 32)"); None for a brought one (its metrics say what it is)."""
    classifier = cfg["classifier"]
    if classifier["source"] != "train":
        return None
    width = "" if classifier["width"] == 16 else f" (width {classifier['width']})"
    return f"ResNet-{classifier['depth']}{width}"


def autoattack_results(cfg: dict) -> list[tuple[str, float]]:
    """(attack, epsilon) of every test-split file of a family whose results are RobustBench model_info entries
    (AutoAttack's): each gets a model_info JSON."""
    return [
        (name, float(eps))
        for name, spec in cfg.get("attacks", {}).items()
        if attack_family(spec).model_info and "test" in spec["splits"]
        for eps in spec["epsilons"]
    ]


def attacked_splits(cfg: dict) -> list[str]:
    """The splits some attack runs on, train before test."""
    used = {s for spec in cfg.get("attacks", {}).values() for s in spec["splits"]}
    return [s for s in ("train", "test") if s in used]


def detects(cfg: dict) -> bool:
    """Whether the run has a detection stage (detection enabled, and attacks to detect)."""
    return bool(cfg["detection"]["enabled"] and cfg.get("attacks"))


def detection_attacks(cfg: dict) -> list[str]:
    """The attacks the detectors train and are tested on (`detection.attacks`, null: all), in the order of
    `attacks` (the order of the detection tables' rows)."""
    chosen = cfg["detection"]["attacks"]
    return [name for name in cfg.get("attacks", {}) if chosen is None or name in chosen]


def detected_attacks(cfg: dict) -> list[str]:
    """`detection_attacks` where the run detects, else none."""
    return detection_attacks(cfg) if detects(cfg) else []


def detection_keys(cfg: dict) -> list[tuple[str, float]]:
    """(attack, epsilon) of every attack file pair the detectors learn from, in table order."""
    return [(name, float(eps)) for name in detection_attacks(cfg) for eps in cfg["attacks"][name]["epsilons"]]


def uses_flow_outputs(cfg: dict) -> bool:
    """Whether a configured detector reads Glow latents or bits/dim (then calibration latents are made)."""
    return detects(cfg) and any(DETECTORS[m].on_flow_outputs for m in cfg["detection"]["methods"])


def latent_clean_splits(cfg: dict) -> list[str]:
    """Splits whose clean latents are made: the attacked ones, and calibration for latent detectors."""
    return attacked_splits(cfg) + (["calibration"] if uses_flow_outputs(cfg) else [])


def aware_methods(cfg: dict) -> list[str]:
    """The detectors the detector-aware attack targets (`detection.aware.methods`; null: every configured
    differentiable one)."""
    aware = cfg["detection"]["aware"]
    if not aware["enabled"]:
        return []
    if aware["methods"] is not None:
        return list(aware["methods"])
    return [m for m in cfg["detection"]["methods"] if DETECTORS[m].differentiable]


def detector_models(cfg: dict, method: str) -> set[str]:
    """The models of other stages that the detection job of `method` loads."""
    spec = DETECTORS.get(method)
    if spec is None:
        return set()
    return spec.models(attacked=method in aware_methods(cfg))


def purifiers(cfg: dict) -> list[str]:
    """The purifiers of the run (`purification.methods`, filled in by validation; none where purification is
    off)."""
    if not cfg["purification"]["enabled"]:
        return []
    return list(cfg["purification"]["methods"])


def trains_autoencoder(cfg: dict) -> bool:
    """The autoencoder is trained where a configured purifier or detector needs it."""
    needed = detects(cfg) and any("autoencoder" in DETECTORS[m].needs for m in cfg["detection"]["methods"])
    return bool(needed or any("autoencoder" in PURIFIERS[p].needs for p in purifiers(cfg)))


def trained_models(cfg: dict) -> list[str]:
    """The models a run trains (each has a training log): a brought classifier or flow is not trained here."""
    models = ["classifier"] if cfg["classifier"]["source"] == "train" else []
    if cfg["latents"]["enabled"] and cfg["flow"]["source"] == "train":
        models.append("flow")
    if trains_autoencoder(cfg):
        models.append("autoencoder")
    return models


def purifies(cfg: dict) -> bool:
    """Whether the run has a purification stage (purification enabled, and attacks to purify)."""
    return bool(purifiers(cfg) and cfg.get("attacks"))


def purification_splits(cfg: dict) -> list[str]:
    """The splits whose attacked images are purified (`purification.splits`; null: every attacked split)."""
    return list(cfg["purification"]["splits"] or attacked_splits(cfg))


def table3_columns(cfg: dict) -> list[tuple[str, float]]:
    """(attack, epsilon) of Table 3's columns (`tables.table3.attacks`; null: every attack)."""
    names = cfg["tables"]["table3"]["attacks"] or list(cfg.get("attacks", {}))
    return [(name, float(eps)) for name in names for eps in cfg["attacks"][name]["epsilons"]]


# ----------------------------------------------------------------------------- the autoencoder sweep (issue 41)
def _merged(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = (
            _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def autoencoder_sweep(cfg: dict) -> dict[str, dict]:
    """{point: the settings its autoencoder is trained with} of `purification.autoencoder_sweep.points`: the
    run's `autoencoder` block (its result keys) with the point's keys in place of the block's. Empty where the
    run has no sweep (or no purification)."""
    sweep = cfg["purification"].get("autoencoder_sweep") or {}
    points = sweep.get("points") or {}
    if not points or not purifies(cfg):
        return {}
    base = {k: v for k, v in cfg["autoencoder"].items() if not is_runtime_key(f"autoencoder.{k}")}
    return {
        point: dict(overrides) if is_brought(overrides) else _merged(base, overrides or {})
        for point, overrides in points.items()
    }


def is_brought(point_settings: dict | None) -> bool:
    """A sweep point that brings its autoencoder (`checkpoint` + `sha256`) instead of training one."""
    return bool(point_settings) and "checkpoint" in point_settings


def brought_points(cfg: dict) -> list[str]:
    return [p for p, s in autoencoder_sweep(cfg).items() if is_brought(s)]


def trained_points(cfg: dict) -> list[str]:
    return [p for p, s in autoencoder_sweep(cfg).items() if not is_brought(s)]


def sweep_purifiers(cfg: dict) -> list[str]:
    """The purifier names of the sweep's points ('autoencoder.<point>'), in the config's order."""
    return [sweep_purifier(point) for point in autoencoder_sweep(cfg)]


def sweep_columns(cfg: dict) -> list[tuple[str, float]]:
    """(attack, epsilon) the sweep measures the paper's Table 3 metric on: `autoencoder_sweep.attacks` (null: the
    paper's three that the config has) at `autoencoder_sweep.epsilon` (the paper's 0.02)."""
    sweep = cfg["purification"]["autoencoder_sweep"]
    names = sweep["attacks"] or [a for a in PAPER_ATTACKS if a in (cfg.get("attacks") or {})]
    return [(name, float(sweep["epsilon"])) for name in names]


def sweep_adaptive(cfg: dict) -> tuple[str, float] | None:
    """(attack, epsilon) of the adaptive attack through every sweep point (`autoencoder_sweep.adaptive`), or None
    where it is off (null, or the run's adaptive attacks are)."""
    sweep = cfg["purification"]["autoencoder_sweep"]
    if sweep["adaptive"] is None or not cfg["purification"]["adaptive"]["enabled"]:
        return None
    return sweep["adaptive"], float(sweep["epsilon"])


def corruptions(cfg: dict) -> list[str]:
    """The natural corruptions of the run (`corruptions.names`; null: none)."""
    return list((cfg.get("corruptions") or {}).get("names") or [])


def corruption_severities(cfg: dict) -> list[int]:
    """The severities every corruption is generated at (`corruptions.severities`), ascending."""
    return sorted(cfg["corruptions"]["severities"]) if corruptions(cfg) else []


def robustbench_corruptions(cfg: dict) -> bool:
    """Whether the run measures RobustBench's `corruptions_acc`: every CIFAR-10-C corruption at every severity."""
    return is_cifar10c(corruptions(cfg), corruption_severities(cfg))


def gradient_free_attacks(cfg: dict) -> list[str]:
    """The configured attacks that read no gradient (`attack_specs.gradient_free`: Square)."""
    return [name for name, spec in (cfg.get("attacks") or {}).items() if gradient_free(spec)]


def seed_tables(cfg: dict) -> list[str]:
    """Base names of the tables every run makes; the seeds gather each into mean and sd."""
    names = ["summary"] if cfg.get("attacks") else []
    if purifies(cfg):
        names.append("table3_purification")
    if detects(cfg):
        names += ["table4_detection", "table5_comparison", "detection_generalisation", "detection_defended"]
    if corruptions(cfg):
        names += ["corruption_classifier", "corruption_purifiers"]
        names += ["corruption_false_alarms"] if detects(cfg) else []
    return names


def adaptive_spec(spec: dict, params: dict, restarts: int | None) -> dict:
    """An attack entry as the adaptive attack runs it (`purification.adaptive`): its Foolbox `params` overridden by
    the adaptive run's for this attack, and `restarts` in place of the attack's own (None: the attack's own)."""
    out = {**spec, "params": {**(spec.get("params") or {}), **(params or {})}}
    if restarts is not None:
        out["restarts"] = restarts
    return out


def attack_settings(spec: dict) -> dict:
    """What one attack job of a validated `attacks.<name>` entry runs: Foolbox class (or AutoAttack), norm,
    constructor parameters, rounding and restarts; not its epsilons or splits (one job per each)."""
    return {
        "class": spec["class"],
        "norm": spec["norm"],
        "params": spec.get("params") or {},
        "quantize": spec["quantize"],
        "restarts": spec["restarts"],
    }


def dataset_settings(cfg: dict) -> dict:
    """The `dataset` keys that decide the dataset file: its source's own keys (SOURCES) and the subset sizes."""
    data = cfg["dataset"]
    keys = ["source", "train_size", "test_size", "calibration_size", *SOURCES[data["source"]]]
    return {k: data[k] for k in keys}


PAPER_ATTACKS = ("fgsm", "pgd", "deepfool")  # the paper's attacks, as this project's configs name them
PAPER_EPSILON = 0.02


def reproduction_epsilon(cfg: dict) -> float | None:
    """The epsilon the reproduction page compares at: the paper's 0.02 where one of the paper's attacks runs at it,
    else the smallest epsilon of those attacks (the page then says so); None: no paper attack, no page."""
    epsilons = sorted(
        {
            float(e)
            for a in PAPER_ATTACKS
            if a in cfg.get("attacks", {})
            for e in cfg["attacks"][a]["epsilons"]
        }
    )
    if not epsilons:
        return None
    return PAPER_EPSILON if any(abs(e - PAPER_EPSILON) < 1e-9 for e in epsilons) else epsilons[0]


def data_label(cfg: dict) -> str:
    """How the reproduction page names a run's data: never "CIFAR-10" for anything but the official images."""
    data = cfg["dataset"]
    if data["source"] == "synthetic":
        return "synthetic data"
    if data["source"] == "cifar100":
        return f"CIFAR-100 ({data['labels']} labels)"
    if data["source"] == "local":
        where = str(data.get("path") or "")
        if "jpeg" in where.lower():
            return "CIFAR-10 (JPEG copy)"
        if "mini" in where.lower():
            return "CIFAR-10 (mini subset)"
        return f"CIFAR-10 (local copy {where})"
    return "CIFAR-10"
