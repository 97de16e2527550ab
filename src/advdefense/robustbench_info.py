"""A run's AutoAttack result in RobustBench's format: the fields of a `model_info` entry of the leaderboard
(`robustbench.utils.ModelInfo`: clean_acc, autoattack_acc, eps, dataset ... as the leaderboard's JSON files
write them: accuracies as percent strings with two decimals, eps as "8/255"), so that a number of this
pipeline compares directly with the leaderboard's, and what the leaderboard's entries leave implicit (threat
model, how many test images, which AutoAttack) under the key `advdefense`.

Torch-free: it reads the attack file (HDF5) and the classifier's metrics (JSON).
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from .attack_files import open_attack_file, summarize_attack_file
from .h5io import write_json
from .plan.attack_specs import attack_family

# the fields of robustbench.utils.ModelInfo (robustbench 1.1.1), in its order; tests check them against the package
MODEL_INFO_FIELDS = (
    "link",
    "name",
    "authors",
    "additional_data",
    "number_forward_passes",
    "dataset",
    "venue",
    "architecture",
    "eps",
    "clean_acc",
    "reported",
    "corruptions_acc",
    "corruptions_acc_3d",
    "corruptions_mce",
    "corruptions_mce_3d",
    "autoattack_acc",
    "footnote",
)
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}  # attacks.<name>.norm -> RobustBench's threat model


def eps_text(eps: float) -> str:
    """eps as the leaderboard writes it: a multiple of 1/255 as "8/255", anything else as its decimal."""
    steps = eps * 255
    if abs(steps - round(steps)) < 1e-6 and round(steps) > 0:
        return f"{round(steps)}/255"
    return f"{eps:g}"


def _percent(x: float) -> str:
    return f"{100 * x:.2f}"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def corruptions_accuracy(accuracy_csv: str | Path) -> dict | None:
    """RobustBench's `corruptions_acc` (the classifier's mean accuracy over CIFAR-10-C's 15 corruptions x 5
    severities) from a run's corruption_accuracy.csv, with what it was measured on; None unless all 75 are there."""
    import pandas as pd

    from .plan.corruption_specs import CORRUPTIONS, SEVERITIES

    table = pd.read_csv(accuracy_csv)
    alone = table[(table["through"] == "none") & table["corruption"].isin(CORRUPTIONS)]
    if len(alone) != len(CORRUPTIONS) * len(SEVERITIES):
        return None
    return {"accuracy": float(alone["accuracy"].mean()), "n_test_images": int(alone["n"].iloc[0])}


def model_info(
    attack_file: str | Path,
    classifier_metrics: str | Path,
    run: str,
    dataset: str,
    architecture: str | None = None,
    corruption_accuracy: str | Path | None = None,
) -> dict:
    """The model_info entry of one AutoAttack file (test split) of run `run`, whose classifier's metrics are
    `classifier_metrics`; `dataset`: RobustBench's name of the data set (cifar10, cifar100); `architecture`:
    that of a classifier trained here (e.g. ResNet-20), None for a brought one; `corruption_accuracy`: the run's
    corruption_accuracy.csv, whose mean over all 15 x 5 corruptions becomes `corruptions_acc`."""
    with open_attack_file(attack_file) as f:
        summary = summarize_attack_file(f)
        params = json.loads(f.attrs.get("params", "{}"))
        versions = json.loads(f.attrs.get("versions", "{}"))
    if not attack_family({"class": summary["foolbox_class"]}).model_info or summary["split"] != "test":
        raise ValueError(f"{attack_file}: not an AutoAttack file of the test split")
    metrics = json.loads(Path(classifier_metrics).read_text())
    source = metrics.get("source", "train")
    if source == "robustbench":
        name, architecture, additional = metrics["robustbench_name"], metrics.get("architecture"), None
    elif source == "train":  # trained here on the run's training split alone
        name, additional = f"advdefense {run}: {architecture or 'classifier'}", False
    else:
        name, architecture, additional = f"advdefense {run}: brought classifier", None, None
    version = params.get("version", "standard")
    package = versions.get("pyautoattack") or _package_version("pyautoattack")
    threat = THREAT_MODELS[summary["norm"]]
    entry = dict.fromkeys(MODEL_INFO_FIELDS)
    entry.update(
        {
            "name": name,
            "additional_data": additional,
            "number_forward_passes": 1,
            "dataset": dataset,
            "architecture": architecture,
            "eps": eps_text(summary["epsilon"]),
            "clean_acc": _percent(summary["clean_accuracy"]),
            "autoattack_acc": _percent(summary["robust_accuracy"]),
            "footnote": (
                f"advdefense: AutoAttack ({version}, pyautoattack {package}) on {summary['n']} test images "
                f"of run {run}; clean accuracy on the same images"
            ),
        }
    )
    entry["advdefense"] = {
        "run": run,
        "threat_model": threat,
        "epsilon": summary["epsilon"],
        "n_test_images": summary["n"],
        "autoattack_version": version,
        "autoattack_package": f"pyautoattack {package}" if package else None,
        "attack": summary["attack"],
        "quantize": summary["quantize"],
        "classifier_source": source,
        "classifier_test_accuracy": metrics.get("test_accuracy"),
    }
    corrupted = corruptions_accuracy(corruption_accuracy) if corruption_accuracy is not None else None
    if corrupted is not None:
        entry["corruptions_acc"] = _percent(corrupted["accuracy"])
        entry["advdefense"]["corruptions"] = (
            f"CIFAR-10-C's 15 corruptions x 5 severities generated here with the published parameters "
            f"(advdefense.corruptions) from {corrupted['n_test_images']} test images of run {run}, not the "
            "published CIFAR-10-C files of all 10 000"
        )
    return entry


def write_model_info(
    attack_file: str | Path,
    classifier_metrics: str | Path,
    out: str | Path,
    run: str,
    dataset: str,
    architecture: str | None = None,
    corruption_accuracy: str | Path | None = None,
) -> dict:
    entry = model_info(attack_file, classifier_metrics, run, dataset, architecture, corruption_accuracy)
    write_json(out, entry, sort_keys=False)  # in ModelInfo's order, as the leaderboard's files are
    return entry
