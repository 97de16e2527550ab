"""Every paper table: its rows, its notes and the paper's numbers, built from the stage outputs, and
written as CSV (full precision) and Markdown (rounded, with a caption and notes). Figures live in
`figures.py` the same way.

- Table 3 (purification): `table3`, `write_table3`;
- Table 4 (latent detector), Table 5 (detectors compared), the generalisation matrix:
  `table4`, `table5`, `generalisation_matrix`, `write_detection_tables`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .attacks import eps_tag, read_attack_file
from .detection import POOLED
from .errors import ConfigError
from .h5io import atomic_path
from .purification import read_purified


def _fmt(value, digits: int) -> str:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    frame = table.reset_index() if table.index.name or not isinstance(table.index, pd.RangeIndex) else table
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_table(table: pd.DataFrame, csv_path, md_path, title: str, notes: list[str] | None = None,
                digits: int = 2) -> None:
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp)
    text = f"## {title}\n\n{to_markdown(table, digits)}\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(text)


# ----------------------------------------------------------------------------- Table 3: purification
PAPER_TABLE3 = {"fgsm": 47.92, "pgd": 53.62, "deepfool": 55.90, POOLED: 52.39}
TABLE3_ROWS = [
    "Successful adversarials: before purification",
    "Successful adversarials: after purification",
    "Successful adversarials: count",
    "All attacked images: before purification",
    "All attacked images: after purification",
    "Adaptive attack through the autoencoder: accuracy",
    "Clean images: without autoencoder",
    "Clean images: with autoencoder",
]


def _pct(mask_or_values) -> float:
    values = np.asarray(mask_or_values, dtype=float)
    return float(100.0 * values.mean()) if values.size else float("nan")


def table3(columns: list[tuple[str, float]], purified: dict, adaptive: dict, clean_path) -> pd.DataFrame:
    """Accuracy (%) of the classifier, rows as TABLE3_ROWS, one column per (attack, eps) plus 'overall'.

    `purified` and `adaptive` map (attack, eps) to file paths (adaptive may be empty)."""
    data = {}
    pooled = {k: [] for k in ("succ_before", "succ_after", "all_before", "all_after", "adaptive")}
    for key in columns:
        if key not in purified:
            raise ConfigError(f"tables.table3.attacks: no purified test file for {key[0]} at eps {key[1]} "
                              "(was the attack generated?)")
        p = read_purified(purified[key])
        succ = p["success"].astype(bool)
        after_ok = p["pred_purified"] == p["label"]
        before_ok = p["pred_adv"] == p["label"]
        col = {
            TABLE3_ROWS[0]: _pct(before_ok[succ]),
            TABLE3_ROWS[1]: _pct(after_ok[succ]),
            TABLE3_ROWS[2]: int(succ.sum()),
            TABLE3_ROWS[3]: _pct(before_ok),
            TABLE3_ROWS[4]: _pct(after_ok),
        }
        pooled["succ_before"].append(before_ok[succ])
        pooled["succ_after"].append(after_ok[succ])
        pooled["all_before"].append(before_ok)
        pooled["all_after"].append(after_ok)
        if key in adaptive:
            a = read_attack_file(adaptive[key], require=("label", "pred_adv"))
            ok = a["pred_adv"] == a["label"]
            col[TABLE3_ROWS[5]] = _pct(ok)
            pooled["adaptive"].append(ok)
        else:
            col[TABLE3_ROWS[5]] = float("nan")
        data[column_name(*key)] = col
    clean = read_purified(clean_path)
    cat = {k: np.concatenate(v) if v else np.array([]) for k, v in pooled.items()}
    data[POOLED] = {
        TABLE3_ROWS[0]: _pct(cat["succ_before"]), TABLE3_ROWS[1]: _pct(cat["succ_after"]),
        TABLE3_ROWS[2]: int(cat["succ_after"].size), TABLE3_ROWS[3]: _pct(cat["all_before"]),
        TABLE3_ROWS[4]: _pct(cat["all_after"]), TABLE3_ROWS[5]: _pct(cat["adaptive"]),
    }
    for col in data.values():
        col[TABLE3_ROWS[6]] = _pct(clean["pred_clean"] == clean["label"])
        col[TABLE3_ROWS[7]] = _pct(clean["pred_purified"] == clean["label"])
    # object columns built from Series: the count row stays integer next to the percentages
    table = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in data.items()}).reindex(TABLE3_ROWS)
    table.index.name = "row"
    return table


def column_name(attack: str, eps: float) -> str:
    return f"{attack} (eps={eps_tag(eps)})"


def write_table3(columns: list[tuple[str, float]], purified: dict, adaptive: dict, clean_path, csv_path, md_path) -> None:
    """Table 3 with its notes (see `table3` for the arguments)."""
    notes = [
        "Accuracy (%) of the classifier on the test images attacked at each epsilon; 'overall' pools all columns.",
        "Successful adversarials: images the attack made the undefended classifier misclassify (the paper's rows).",
        "Adaptive attack: the same attack and epsilon run end to end through autoencoder + classifier (white box).",
        "Paper (successful adversarials, after purification): "
        + ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE3.items()) + "; before: 0 by definition.",
    ]
    write_table(table3(columns, purified, adaptive, clean_path), csv_path, md_path,
                "Table 3: purification by the autoencoder", notes)


# ----------------------------------------------------------------------------- Tables 4 and 5: detection
PAPER_TABLE4 = {"fgsm": 97.12, "pgd": 97.07, "deepfool": 63.17, POOLED: 83.6}
TABLE4_COLUMNS = {"accuracy": "accuracy (%)", "auroc": "AUROC", "tpr_at_5fpr": "TPR at 5% FPR (%)",
                  "fpr_clean": "FPR on clean (%)", "tpr_successful": "detected, successful adv. (%)",
                  "tpr_failed": "detected, failed adv. (%)", "n_attacked": "attacked test images"}
PERCENT = {"accuracy", "tpr_at_5fpr", "fpr_clean", "tpr_successful", "tpr_failed", "tpr"}


def _present(row: pd.Series, columns: dict) -> dict:
    return {label: (100 * row[k] if k in PERCENT else row[k]) for k, label in columns.items()}


def table4(latent_eval: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Paper Table 4: the latent detector of each key on that key's test set, and the pooled one."""
    rows = {}
    for key in keys + [POOLED]:
        sel = latent_eval[(latent_eval["train"] == key) & (latent_eval["test"] == key)]
        if sel.empty:
            raise ConfigError(f"tables: no latent-detector evaluation for {key}")
        rows[key] = _present(sel.iloc[0], TABLE4_COLUMNS)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "attack"
    return table


def table5(evaluations: pd.DataFrame, mmd: pd.DataFrame | None, keys: list[str], mmd_batch: int | None) -> pd.DataFrame:
    """Methods x attacks, all measured here: balanced accuracy and AUROC of each detector on its own key."""
    rows = {}
    for method in evaluations["method"].unique():
        ev = evaluations[evaluations["method"] == method]
        row = {}
        for key in keys + [POOLED]:
            sel = ev[(ev["train"] == key) & (ev["test"] == key)]
            row[f"{key} acc (%)"] = 100 * sel.iloc[0]["accuracy"] if not sel.empty else float("nan")
            row[f"{key} AUROC"] = sel.iloc[0]["auroc"] if not sel.empty else float("nan")
        rows[METHOD_LABELS.get(method, method)] = row
    if mmd is not None and mmd_batch is not None:
        sel = mmd[mmd["batch_size"] == mmd_batch]
        power = {r["test"]: r["rejection_rate"] for _, r in sel.iterrows()}
        row = {}
        for key in keys:
            row[f"{key} acc (%)"] = 100 * 0.5 * (power.get(key, float("nan")) + 1 - power.get("clean", float("nan")))
            row[f"{key} AUROC"] = float("nan")
        attacked = [power[k] for k in keys if k in power]
        row[f"{POOLED} acc (%)"] = 100 * 0.5 * (np.mean(attacked) + 1 - power.get("clean", float("nan"))) if attacked else float("nan")
        row[f"{POOLED} AUROC"] = float("nan")
        rows[f"Kernel MMD test, batches of {mmd_batch} (Grosse et al. 2017)"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


METHOD_LABELS = {
    "latent_mlp": "Glow latent + 5-layer MLP (paper)",
    "pixel_cnn": "Binary CNN on pixels (Gong et al. 2017)",
    "pca": "PCA trailing-component energy (Hendrycks & Gimpel 2016)",
    "magnet": "Autoencoder reconstruction error (MagNet)",
}


def _pooled_last(labels) -> list[str]:
    return sorted(labels, key=lambda k: (k == POOLED, k))


def generalisation_matrix(evaluation: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """`metric` of each detector (rows: trained on) on each test set (columns); the pooled one last."""
    table = evaluation.pivot(index="train", columns="test", values=metric)
    table = table.loc[_pooled_last(table.index), _pooled_last(table.columns)]
    table.index.name = "trained on \\ tested on"
    return table


def write_detection_tables(evaluations: pd.DataFrame, mmd: pd.DataFrame | None, keys: list[str],
                           mmd_batch: int | None, out: dict) -> None:
    """Table 4, Table 5 and the generalisation matrix from the detectors' evaluations (`out`: the paths
    table4_csv, table4_md, table5_csv, table5_md, general_csv, general_md)."""
    latent = evaluations[evaluations["method"] == "latent_mlp"]
    paper = ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE4.items())
    write_table(table4(latent, keys), out["table4_csv"], out["table4_md"],
                "Table 4: detection from the Glow latent (5-layer MLP)",
                ["Balanced test sets: the clean test images and their attacked versions; accuracy is the paper's metric.",
                 "One detector per attack trained on that attack's training images; 'overall': one detector trained on "
                 "all attacks pooled, tested on all of them.",
                 "detected, successful/failed adv.: share of attacked images flagged, split by whether the attack "
                 "fooled the classifier.",
                 f"Paper (accuracy %): {paper}."])
    write_table(table5(evaluations, mmd, keys, mmd_batch if mmd is not None else None), out["table5_csv"],
                out["table5_md"], "Table 5: detection methods compared on the same images",
                ["Every method is trained on the same training images and tested on the same test images here; the "
                 "paper copied its baseline numbers from other papers and data sets.",
                 "acc: balanced accuracy (%) of the detector trained on that attack; AUROC is threshold-free.",
                 "MMD: a test on batches, not single images; its 'accuracy' is the mean of power on attacked "
                 "batches and 1 - false-positive rate on clean batches at the configured level; see "
                 "results/detection/<dataset>/mmd/power.csv for every batch size."])
    write_table(generalisation_matrix(latent), out["general_csv"], out["general_md"],
                "Latent detector generalisation: AUROC, trained on rows, tested on columns", digits=3)
