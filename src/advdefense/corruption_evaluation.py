"""What every defence costs on images nobody attacked: the classifier and every purifier on the CIFAR-10-C
corruptions of the run's test images (rule `corruption_accuracy`), and the three tables (rule `corruption_tables`):

1. the classifier's accuracy per corruption and severity, and the mean over the 15 x 5 (RobustBench's
   `corruptions_acc` metric: the unweighted mean accuracy over corruptions and severities);
2. the accuracy through every purifier on the same images, beside the classifier's alone;
3. every detector's false-alarm rate on the corrupted clean images at its calibrated thresholds, beside its
   detection rate on the attacks (the pooled honest set) at the same threshold.

The accuracy job imports torch when it runs; the tables are torch-free.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .corrupted_files import read_corrupted_file
from .errors import PipelineFileError
from .h5io import atomic_path
from .plan.names import POOLED, corruption_key, fpr_label

log = logging.getLogger(__name__)
NONE = "none"  # the `through` of the classifier alone
CLEAN_ROW = "clean"  # the uncorrupted images of the same files (severity 0)
MEAN_ROW = "mean"  # the mean over the corruptions (and, in its column, over severities)


# ----------------------------------------------------------------------------- the accuracy job
def corruption_accuracy(
    dataset_path,
    classifier_path,
    corrupted: dict[str, str | Path],
    purifiers: list,
    out_path,
    *,
    device: str = "auto",
    batch_size: int = 500,
) -> pd.DataFrame:
    """Accuracy of the classifier alone (`through` = none) and through each purifier (`purifiers`: PurifierSetup)
    on the clean images of the corrupted files and on every {corruption: file} at every severity.
    Writes the long table (through, corruption, severity, n, accuracy) to `out_path`."""
    import torch

    from .classifier import load_classifier
    from .data import read_split
    from .inference import evaluation_model
    from .purifiers import checked_output
    from .runtime import resolve_device

    device = resolve_device(device)
    classifier = evaluation_model(load_classifier(classifier_path, device), device)
    chains = {NONE: None, **{setup.name: setup.build(device) for setup in purifiers}}
    files = {name: read_corrupted_file(path, expect_corruption=name) for name, path in corrupted.items()}
    if not files:
        raise PipelineFileError("corruption_accuracy: no corrupted-images files to evaluate")
    first = next(iter(files.values()))
    for f in files.values():
        if not np.array_equal(f.index, first.index):
            raise PipelineFileError(f"{f.path} and {first.path} hold different test images")
    clean = read_split(dataset_path, "test", first.index)
    if not np.array_equal(clean.labels, first.label):
        raise PipelineFileError(f"{first.path}: its labels are not {dataset_path}'s for its test images")

    @torch.inference_mode()
    def accuracy(images: np.ndarray, chain) -> float:
        correct = 0
        for s in range(0, len(images), batch_size):
            x = torch.from_numpy(images[s : s + batch_size]).to(device).float() / 255.0
            if chain is not None:
                x = checked_output(chain.name, x, chain(x), s)
            correct += int((classifier(x).argmax(1).cpu().numpy() == first.label[s : s + batch_size]).sum())
        return correct / len(images)

    sets = [(CLEAN_ROW, 0, clean.images)]
    for name, f in files.items():
        sets += [(name, severity, None) for severity in f.severities]
    rows = []
    for corruption, severity, images in sets:
        if images is None:
            images = files[corruption].images(severity)
        for through, chain in chains.items():
            acc = accuracy(images, chain)
            rows.append(
                {
                    "through": through,
                    "corruption": corruption,
                    "severity": severity,
                    "n": len(images),
                    "accuracy": acc,
                }
            )
        log.info(
            "%s s%d: %s",
            corruption,
            severity,
            ", ".join(f"{r['through']} {100 * r['accuracy']:.1f}%" for r in rows[-len(chains) :]),
        )
    table = pd.DataFrame(rows)
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return table


# ----------------------------------------------------------------------------- the tables
def _wide(long: pd.DataFrame, value: str) -> pd.DataFrame:
    """corruption x severity of `value`, a `mean` column over severities and a `mean` row over corruptions
    (the clean row, severity 0, stays out of both means)."""
    corrupted = long[long["corruption"] != CLEAN_ROW]
    order = list(dict.fromkeys(corrupted["corruption"]))
    wide = corrupted.pivot(index="corruption", columns="severity", values=value).loc[order]
    wide.columns = [f"s{int(c)}" for c in wide.columns]
    wide[MEAN_ROW] = wide.mean(axis=1)
    wide.loc[MEAN_ROW] = wide.mean(axis=0)
    wide.index.name = "corruption"
    return wide


def classifier_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Table 1: the classifier alone, accuracy (%) per corruption and severity; the `mean` row's `mean` is
    RobustBench's corruptions accuracy; `clean` is the same images uncorrupted."""
    alone = accuracy[accuracy["through"] == NONE].assign(accuracy=lambda t: 100 * t["accuracy"])
    wide = _wide(alone, "accuracy")
    clean = float(alone.loc[alone["corruption"] == CLEAN_ROW, "accuracy"].iloc[0])
    wide.insert(0, "clean", clean)
    wide.insert(0, "n", int(alone["n"].iloc[0]))
    return wide.reset_index()


def purifier_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Table 2: per purifier, its accuracy (%) on each corruption (mean over severities) and on the clean images,
    and the change against the classifier alone (percentage points): does purification hurt or help?"""
    table = accuracy.assign(accuracy=lambda t: 100 * t["accuracy"])
    alone = table[table["through"] == NONE].set_index(["corruption", "severity"])["accuracy"]
    rows = []
    for through in [t for t in dict.fromkeys(table["through"]) if t != NONE]:
        mine = table[table["through"] == through]
        change = mine.assign(
            accuracy=mine["accuracy"].to_numpy()
            - alone.loc[list(zip(mine["corruption"], mine["severity"]))].to_numpy()
        )
        wide, delta = _wide(mine, "accuracy"), _wide(change, "accuracy")
        clean = mine.loc[mine["corruption"] == CLEAN_ROW, "accuracy"].iloc[0]
        clean_change = change.loc[change["corruption"] == CLEAN_ROW, "accuracy"].iloc[0]
        for corruption in wide.index:
            rows.append(
                {
                    "purifier": through,
                    "corruption": corruption,
                    "accuracy": wide.loc[corruption, MEAN_ROW],
                    "change": delta.loc[corruption, MEAN_ROW],
                    **{f"{c}": wide.loc[corruption, c] for c in wide.columns if c != MEAN_ROW},
                }
            )
        rows.append({"purifier": through, "corruption": CLEAN_ROW, "accuracy": clean, "change": clean_change})
    return pd.DataFrame(rows)


def false_alarm_table(
    evaluations: dict[str, str | Path], corruptions: list[str], severities: list[int]
) -> pd.DataFrame:
    """Table 3: per detector (the one trained on all attacks pooled) and calibrated FPR, the share of corrupted
    clean images it flags, per corruption (mean over severities, and each severity), and beside it the share of
    the attacks (pooled, honest set) it flags at the same threshold and the FPR realised on clean test images."""
    rows = []
    for method, path in evaluations.items():
        table = pd.read_csv(path)
        pooled = table[table["train"] == POOLED]
        fprs = sorted(float(c[len("tpr_at_fpr") :]) for c in pooled.columns if c.startswith("tpr_at_fpr"))
        attacks = pooled[(pooled["test"] == POOLED) & (pooled["set"] == "honest")]
        if attacks.empty:
            raise PipelineFileError(f"{path}: no row for the pooled honest attack set")
        corrupted = pooled[pooled["set"] == "corruption"].set_index("test")
        for fpr in fprs:
            label = fpr_label(fpr / 100)
            column = f"tpr_at_fpr{label}"
            per = {}
            for name in corruptions:
                keys = [corruption_key(name, s) for s in severities]
                missing = [k for k in keys if k not in corrupted.index]
                if missing:
                    raise PipelineFileError(
                        f"{path}: no false-alarm row {missing[0]} (rerun the detector with the corruptions configured)"
                    )
                per[name] = [float(corrupted.loc[k, column]) for k in keys]
            for name, values in per.items():
                rows.append(
                    {
                        "detector": method,
                        "calibrated_fpr_percent": fpr,
                        "corruption": name,
                        "false_alarms": 100 * float(np.mean(values)),
                        **{f"s{s}": 100 * v for s, v in zip(severities, values)},
                        "detected_attacks": 100 * float(attacks[column].iloc[0]),
                        "clean_test_fpr": 100 * float(attacks[f"fpr_test_at_fpr{label}"].iloc[0]),
                    }
                )
            rows.append(
                {
                    "detector": method,
                    "calibrated_fpr_percent": fpr,
                    "corruption": MEAN_ROW,
                    "false_alarms": 100 * float(np.mean([v for values in per.values() for v in values])),
                    **{
                        f"s{s}": 100 * float(np.mean([values[i] for values in per.values()]))
                        for i, s in enumerate(severities)
                    },
                    "detected_attacks": 100 * float(attacks[column].iloc[0]),
                    "clean_test_fpr": 100 * float(attacks[f"fpr_test_at_fpr{label}"].iloc[0]),
                }
            )
    return pd.DataFrame(rows)


def write_corruption_tables(
    accuracy_path, evaluations: dict, corruptions: list[str], severities: list[int], outputs: dict
) -> None:
    """The three tables as CSV (full precision) and one Markdown page (`outputs`: classifier, purifiers,
    false_alarms, markdown)."""
    from .tables import to_markdown

    accuracy = pd.read_csv(accuracy_path)
    tables = {
        "classifier": classifier_table(accuracy),
        "purifiers": purifier_table(accuracy),
        "false_alarms": false_alarm_table(evaluations, corruptions, severities),
    }
    for name, table in tables.items():
        with atomic_path(outputs[name]) as tmp:
            table.to_csv(tmp, index=False)
    n = int(accuracy["n"].iloc[0])
    parts = [
        "# Natural corruptions (CIFAR-10-C's 15 corruptions, generated here)",
        "",
        f"On {n} test images (those the attacks use), at severities {', '.join(map(str, severities))}. "
        "Accuracies in %; `mean` over severities (column) and over corruptions (row): the `mean` row's `mean` is "
        "RobustBench's corruptions accuracy when all 15 corruptions at all 5 severities are configured.",
        "",
        "## 1. The classifier",
        "",
        to_markdown(tables["classifier"], 1),
        "",
        "## 2. Through each purifier (accuracy, and change against the classifier alone, points)",
        "",
        to_markdown(tables["purifiers"], 1) if len(tables["purifiers"]) else "No purifier configured.",
        "",
        "## 3. Detectors: false alarms on corrupted clean images (%) at the calibrated threshold",
        "",
        "Beside them, the attacks the same detector (trained on all attacks pooled) flags at that threshold "
        "(pooled honest set) and the FPR it realises on clean test images.",
        "",
        to_markdown(tables["false_alarms"], 1) if len(tables["false_alarms"]) else "No detector configured.",
        "",
    ]
    with atomic_path(outputs["markdown"]) as tmp:
        tmp.write_text("\n".join(parts))
