"""The reproduction page: every number the paper reports beside ours, like-for-like or saying what differs, with a
95 % interval and the number of images, from a run's result files (one run, or the runs of `seeds`).

Two steps, so that `docs/` holds only generated numbers:

- `collect_run` reads one run's files (the classifier's metrics, the attack summary, Tables 3, 4 and 5 and the
  paper detector's per-image scores) into rows; `gather` joins the rows of a group's seeds (mean, and a t interval
  over seeds where there are two or more; else the run's own interval: Wilson for a proportion, a bootstrap over
  images for an AUROC or a detection accuracy). The result is one small CSV.
- `render` writes the page (markdown) from that CSV alone: the side-by-side table, a verdict per quantity derived
  from the numbers, and what each comparison leaves different. `advdefense-reproduction CSV` re-renders it, and a
  test fails when a committed page differs from what its committed CSV renders to.

Torch-free: it reads CSV, JSON and NumPy files.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PipelineFileError
from .h5io import atomic_path
from .plan.decisions import PAPER_ATTACKS, PAPER_EPSILON
from .plan.names import POOLED, attack_key, eps_tag, fpr_label
from .plan.purifier_specs import purifier_title
from .score_files import read_scores, scores_path
from .tables import NOT_TRAINED, PAPER_TABLE3, PAPER_TABLE4, WORST_ROW

PAPER_IMAGES = 5000  # the paper attacked 5000 test images
PAPER_ACCURACY = 88.29  # ResNet-20 on CIFAR-10 (He et al. 2016: 91.25)
PAPER_SUCCESS = {"fgsm": 82.58, "pgd": 99.99, "deepfool": 99.05}  # Table 2, % of the 5000 attacked images
PAPER_FPR = 0.05  # Table 4's accuracy: balanced accuracy at a threshold of 5 % false positives
BOOTSTRAP = 1000
Z95 = 1.959963984540054
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class Row:
    """One number of the page, in percent (AUROC: 0..1)."""

    section: str
    quantity: str
    paper: float  # nan: the paper has no comparable number
    ours: float
    low: float
    high: float
    n: int  # images behind `ours` (per seed)
    seeds: int
    interval: str  # how low..high were made
    comparison: str  # "like-for-like", or what differs


# ----------------------------------------------------------------------------- intervals
def wilson(successes: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion, in percent."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + half the ties (the Mann-Whitney statistic)."""
    both = np.concatenate([negatives, positives])
    ranks = pd.Series(both).rank(method="average").to_numpy()
    n0, n1 = len(negatives), len(positives)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def detection_numbers(clean: np.ndarray, attacked: np.ndarray, threshold: float) -> tuple[float, float]:
    """AUROC of attacked vs clean scores, and the balanced accuracy (%) at `threshold` (flag: score > threshold)."""
    tpr = float((attacked > threshold).mean())
    fpr = float((clean > threshold).mean())
    return auroc(clean, attacked), 100 * (tpr + 1 - fpr) / 2


def bootstrap_detection(clean, attacked, threshold, seed: int = 0, resamples: int = BOOTSTRAP):
    """95 % percentile intervals of `detection_numbers` over images resampled with replacement (the clean and the
    attacked version of an image stay together: the sets are the same images)."""
    rng = np.random.default_rng(seed)
    n = len(clean)
    draws = np.array(
        [detection_numbers(clean[i], attacked[i], threshold) for i in rng.integers(0, n, (resamples, n))]
    )
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    return (float(low[0]), float(high[0])), (float(low[1]), float(high[1]))


# ----------------------------------------------------------------------------- one run
@dataclass
class RunFiles:
    """The files of one run that the page reads."""

    classifier_metrics: Path
    attack_summary: Path
    table3: Path | None = None
    table4: Path | None = None
    table5: Path | None = None
    detector_models: Path | None = None  # the paper detector's models directory (scores_<key>.npz)
    sweep: Path | None = None  # the autoencoder sweep's table (advdefense.sweep), where the run has one
    sweep_by_size: Path | None = None  # and its recovery by perturbation size


def _column(table: pd.DataFrame, attack: str, eps: float) -> str | None:
    for column in table.columns:
        found = re.fullmatch(r"(.+) \(eps=(.+)\)", str(column))
        if found and found[1] == attack and eps_tag(float(found[2])) == eps_tag(eps):
            return column
    return None


def collect_run(files: RunFiles, data_label: str, eps: float = PAPER_EPSILON) -> list[Row]:
    """The page's rows of one run. `data_label` names the data ("CIFAR-10 (JPEG copy)" ...) in the comparisons."""
    rows = [_classifier_row(files, data_label)]
    rows += _attack_rows(files, data_label, eps)
    if files.table3 is not None:
        rows += _table3_rows(files, data_label, eps)
    if files.table4 is not None and files.detector_models is not None:
        rows += _table4_rows(files, data_label, eps)
    if files.table5 is not None:
        rows += _table5_rows(files, eps)
    if files.sweep is not None:
        rows += _sweep_rows(files, data_label)
    return rows


def _classifier_row(files: RunFiles, data_label: str) -> Row:
    metrics = json.loads(Path(files.classifier_metrics).read_text())
    n = int(metrics.get("test_images", 0))
    accuracy = 100 * float(metrics["test_accuracy"])
    low, high = wilson(accuracy / 100 * n, n)
    return Row(
        "classifier",
        "ResNet-20 test accuracy (%)",
        PAPER_ACCURACY,
        accuracy,
        low,
        high,
        n,
        1,
        "Wilson",
        f"differs: {data_label}, {n} test images (paper: the official 10 000); training recipe "
        f"{metrics.get('epochs', '?')} epochs",
    )


def _attack_rows(files: RunFiles, data_label: str, eps: float) -> list[Row]:
    summary = pd.read_csv(files.attack_summary)
    rows = []
    for attack in PAPER_ATTACKS:
        hit = summary[
            (summary["attack"] == attack)
            & (summary["split"] == "test")
            & (summary["epsilon"].map(eps_tag) == eps_tag(eps))
        ]
        if hit.empty:
            continue
        row = hit.iloc[0]
        n = int(row["n"])
        rate = 100 * float(row["success_rate"])
        low, high = wilson(rate / 100 * n, n)
        rows.append(
            Row(
                "attacks",
                f"{attack.upper() if attack != 'deepfool' else 'DeepFool'} success at {eps:g} (%)",
                PAPER_SUCCESS[attack],
                rate,
                low,
                high,
                n,
                1,
                "Wilson",
                f"same attack and metric (misclassified after the attack, over every attacked image){_eps_note(eps)}; "
                f"differs: {data_label}, {n} images (paper {PAPER_IMAGES}), another trained classifier",
            )
        )
    return rows


def _table3_rows(files: RunFiles, data_label: str, eps: float) -> list[Row]:
    table = pd.read_csv(files.table3).set_index("row")
    title = purifier_title("autoencoder")
    recovered_row = f"{title}: successful adversarials after purification"
    if recovered_row not in table.index:
        return []
    rows, counts, recovered = [], {}, {}
    for attack in PAPER_ATTACKS:
        column = _column(table, attack, eps)
        if column is None:
            continue
        counts[attack] = int(table.loc["Successful adversarials: count", column])
        recovered[attack] = float(table.loc[recovered_row, column])
        low, high = wilson(recovered[attack] / 100 * counts[attack], counts[attack])
        rows.append(
            Row(
                "purification",
                f"Table 3: {attack} adversarials classified right after the autoencoder (%)",
                PAPER_TABLE3[attack],
                recovered[attack],
                low,
                high,
                counts[attack],
                1,
                "Wilson",
                f"same metric on the same attack{_eps_note(eps)}; differs: {data_label}, this project's "
                f"autoencoder setting and classifier",
            )
        )
    if len(counts) == len(PAPER_ATTACKS):
        total = sum(counts.values())
        pooled = sum(recovered[a] * counts[a] for a in counts) / total
        low, high = wilson(pooled / 100 * total, total)
        rows.append(
            Row(
                "purification",
                "Table 3 overall: the three attacks' successful adversarials pooled (%)",
                PAPER_TABLE3["overall"],
                pooled,
                low,
                high,
                total,
                1,
                "Wilson",
                f"pooled over the images of the paper's three attacks{_eps_note(eps)} (weighted by their successful "
                "adversarials); the paper's overall is neither that weighting of its own columns nor their mean "
                f"({_paper_weightings()}), so its weighting is unknown",
            )
        )
    for label, source in (
        ("clean test images through the autoencoder: accuracy (%)", f"{title}: clean images"),
        (
            f"adaptive attack through the autoencoder (PGD at {eps:g}): accuracy (%)",
            f"{title}: adaptive attack through it",
        ),
    ):
        column = _column(table, "pgd", eps)
        if source in table.index and column is not None:
            value = float(table.loc[source, column])
            rows.append(
                Row("purification", label, math.nan, value, math.nan, math.nan, 0, 1, "", "not in the paper")
            )
    # per purifier: the per-image worst case over every adaptive attack at this eps (what a reader should take
    # away; a pooled "overall" of the adaptive columns counts an image once per attack that missed it)
    column = next((c for a in PAPER_ATTACKS if (c := _column(table, a, eps)) is not None), None)
    for row_name in table.index:
        if column is None or not str(row_name).endswith(f": {WORST_ROW}"):
            continue
        value = float(table.loc[row_name, column])
        if math.isnan(value):
            continue
        purifier = str(row_name)[: -len(f": {WORST_ROW}")]
        rows.append(
            Row(
                "purification",
                f"defended accuracy at {eps:g}, worst case over every adaptive attack through {purifier} (%)",
                math.nan,
                value,
                math.nan,
                math.nan,
                0,
                1,
                "",
                "not in the paper: per image, right only where every adaptive attack of Table 3 at this epsilon "
                "(every column, 8-bit and gradient-free ones too) left it right",
            )
        )
    return rows


SWEEP = "autoencoder sweep"  # sections of the page's second and third tables (rendered by point and by size)
BY_SIZE = "recovery by perturbation size"
SWEEP_METRICS = (  # (quantity suffix, sweep column, paper value or None, count column for a Wilson interval)
    ("recovery overall (%)", "recovery_overall", PAPER_TABLE3["overall"], "successful_overall"),
    *((f"recovery {a} (%)", f"recovery_{a}", PAPER_TABLE3[a], f"successful_{a}") for a in PAPER_ATTACKS),
    ("clean accuracy through it (%)", "clean_accuracy", None, "clean_images"),
    ("clean accuracy without it (%)", "clean_accuracy_without", None, "clean_images"),
    ("adaptive accuracy through it (%)", "adaptive_accuracy", None, "adaptive_images"),
    ("reconstruction PSNR (dB)", "test_psnr", None, None),
)


def _sweep_rows(files: RunFiles, data_label: str) -> list[Row]:
    """Per sweep point its recovery (overall and per attack, against the paper's), clean accuracy through it
    and without it, accuracy under the adaptive attack through it and PSNR; then, for the point closest to the
    paper's overall, recovery by quartile of the perturbation's L2 norm per attack."""
    table = pd.read_csv(files.sweep)
    rows = []
    for _, r in table.iterrows():
        noise = "?" if pd.isna(r["noise_std"]) else f"{r['noise_std']:g}"
        epochs = "?" if pd.isna(r["epochs"]) else f"{int(r['epochs'])}"
        setting = f"code {int(r['code_values'])} values, noise {noise}, {epochs} epochs"
        if r.get("source") == "brought":
            setting += ", brought from another run"
        for suffix, column, paper, count in SWEEP_METRICS:
            if column not in r or pd.isna(r[column]):
                continue
            value, n = float(r[column]), int(r[count]) if count else int(r["clean_images"])
            low, high = wilson(value / 100 * n, n) if count else (math.nan, math.nan)
            comparison = (
                f"the paper's Table 3 metric; differs: {data_label}; autoencoder: {setting}"
                if paper is not None
                else f"not in the paper; autoencoder: {setting}"
                + (
                    f"; {r['adaptive_attack']} through autoencoder + classifier"
                    if "adaptive" in column
                    else ""
                )
            )
            rows.append(
                Row(
                    SWEEP,
                    f"{r['point']}: {suffix}",
                    math.nan if paper is None else paper,
                    value,
                    low,
                    high,
                    n,
                    1,
                    "Wilson" if count else "",
                    comparison,
                )
            )
    if files.sweep_by_size is not None and len(table):
        by_size = pd.read_csv(files.sweep_by_size)
        closest = table.loc[(table["recovery_overall"] - PAPER_TABLE3["overall"]).abs().idxmin(), "point"]
        for _, r in by_size[by_size["point"] == closest].iterrows():
            label = f"{r['attack']}, L2 quartile {int(r['size_bin'])} of {int(r['bins'])}"
            n = int(r["images"])
            low, high = wilson(r["recovery"] / 100 * n, n)
            rows.append(
                Row(
                    BY_SIZE,
                    f"{label}: recovered (%)",
                    math.nan,
                    float(r["recovery"]),
                    low,
                    high,
                    n,
                    1,
                    "Wilson",
                    f"autoencoder {closest}",
                )
            )
            rows.append(
                Row(
                    BY_SIZE,
                    f"{label}: median L2",
                    math.nan,
                    float(r["median_l2"]),
                    math.nan,
                    math.nan,
                    n,
                    1,
                    "",
                    f"autoencoder {closest}",
                )
            )
    return rows


def _eps_note(eps: float) -> str:
    if eps_tag(eps) == eps_tag(PAPER_EPSILON):
        return f" at the paper's epsilon {PAPER_EPSILON:g}"
    return f" at epsilon {eps:g} (differs: the paper's is {PAPER_EPSILON:g})"


def _paper_weightings() -> str:
    mean = sum(PAPER_TABLE3[a] for a in PAPER_ATTACKS) / len(PAPER_ATTACKS)
    weights = {a: PAPER_IMAGES * PAPER_SUCCESS[a] / 100 for a in PAPER_ATTACKS}
    weighted = sum(PAPER_TABLE3[a] * weights[a] for a in PAPER_ATTACKS) / sum(weights.values())
    return f"mean {mean:.2f}, weighted by Table 2's successes {weighted:.2f}, reported {PAPER_TABLE3['overall']:.2f}"


def _table4_rows(files: RunFiles, data_label: str, eps: float) -> list[Row]:
    rows, accuracies = [], []
    for attack in PAPER_ATTACKS:
        key = attack_key(attack, eps)
        if not scores_path(files.detector_models, key).is_file():
            continue
        scores = read_scores(files.detector_models, key)
        clean, attacked, threshold = scores.of("clean"), scores.of(key), scores.threshold(PAPER_FPR)
        (area, accuracy) = detection_numbers(clean, attacked, threshold)
        (a_low, a_high), (c_low, c_high) = bootstrap_detection(clean, attacked, threshold)
        accuracies.append(accuracy)
        what = (
            f"the paper's detector (Glow latent, 5-layer MLP) trained and tested on {attack}{_eps_note(eps)}, "
            f"every attacked image against its clean image; differs: {data_label}, a smaller Glow trained here, a "
            "threshold calibrated on held-out clean images"
        )
        rows.append(
            Row(
                "detection",
                f"Table 4: {attack} balanced accuracy at 5 % FPR (%)",
                PAPER_TABLE4[attack],
                accuracy,
                c_low,
                c_high,
                len(clean),
                1,
                f"bootstrap over images ({BOOTSTRAP})",
                what,
            )
        )
        rows.append(
            Row(
                "detection",
                f"Table 4: {attack} AUROC",
                math.nan,
                area,
                a_low,
                a_high,
                len(clean),
                1,
                f"bootstrap over images ({BOOTSTRAP})",
                "the paper gives accuracy only",
            )
        )
    if len(accuracies) == len(PAPER_ATTACKS):
        rows.append(
            Row(
                "detection",
                "Table 4 overall: mean of the three attacks' accuracies (%)",
                PAPER_TABLE4["overall"],
                float(np.mean(accuracies)),
                math.nan,
                math.nan,
                0,
                1,
                "",
                "differs: the paper's overall is one detector on its three attacks pooled; ours is the mean of "
                "the three detectors above",
            )
        )
    table = pd.read_csv(files.table4).set_index("attack")
    pooled = "overall (all images)"
    if pooled in table.index:
        rows.append(
            Row(
                "detection",
                "Table 4, extra row: one detector on every attack file pooled, balanced accuracy (%)",
                math.nan,
                float(table.loc[pooled, f"accuracy at {fpr_label(PAPER_FPR)}% FPR (%)"]),
                math.nan,
                math.nan,
                int(table.loc[pooled, "attacked test images"]),
                1,
                "",
                "not the paper's overall: pooled over every attack file the detectors learn (other epsilons and "
                "8-bit files too)",
            )
        )
    return rows


def _table5_rows(files: RunFiles, eps: float) -> list[Row]:
    table = pd.read_csv(files.table5)
    keys = [attack_key(a, eps) for a in PAPER_ATTACKS]
    columns = [f"{k} AUROC" for k in keys if f"{k} AUROC" in table.columns]
    if not columns:
        return []
    baselines = "the paper copied its baselines' numbers from other papers and data sets: none is comparable"
    rows = []
    for method, row in table.set_index("method").iterrows():
        # a detector of one key that stayed at chance is printed "did not train": no mean is formed over it
        untrained = [c[: -len(" AUROC")] for c in columns if str(row[c]) == NOT_TRAINED]
        values = pd.to_numeric(row[columns], errors="coerce")
        rows.append(
            Row(
                "detection",
                f"Table 5: {method}: mean AUROC on the three attacks at {eps:g}",
                math.nan,
                math.nan if untrained else float(values.mean()),
                math.nan,
                math.nan,
                0,
                1,
                "",
                f"{NOT_TRAINED} on {', '.join(untrained)}: no mean; {baselines}" if untrained else baselines,
            )
        )
    return rows


# ----------------------------------------------------------------------------- seeds
def gather(per_seed: Sequence[list[Row]]) -> pd.DataFrame:
    """One row per quantity over the seeds' rows: the mean, and with two or more seeds a 95 % t interval of the
    seed means (otherwise the run's own interval)."""
    frames = [pd.DataFrame([asdict(r) for r in rows]).assign(seed_index=i) for i, rows in enumerate(per_seed)]
    every = pd.concat(frames, ignore_index=True)
    out = []
    for _, group in every.groupby(["section", "quantity"], sort=False):
        first = group.iloc[0]
        k = len(group)
        row = {f.name: first[f.name] for f in fields(Row)}
        row.update(ours=float(group["ours"].mean()), seeds=k, n=int(group["n"].iloc[0]))
        if k >= 2:
            half = T95[min(k - 1, max(T95))] * float(group["ours"].std(ddof=1)) / math.sqrt(k)
            row.update(low=row["ours"] - half, high=row["ours"] + half, interval=f"t over {k} seeds")
        out.append(row)
    return pd.DataFrame(out, columns=[f.name for f in fields(Row)])


# ----------------------------------------------------------------------------- the page
def _number(value: float, quantity: str, decimals: int = 1) -> str:
    """A percentage with `decimals` (the paper's own: 2), an AUROC with 3."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return (
        f"{value:.3f}"
        if ("AUROC" in quantity or "L2" in quantity.split(":")[-1])
        else f"{value:.{decimals}f}"
    )


def verdict(row: pd.Series) -> str:
    """What the numbers say: the paper's value inside our interval, or how far outside, in points."""
    if math.isnan(row["paper"]):
        return "—"
    if not math.isnan(row["low"]) and row["low"] <= row["paper"] <= row["high"]:
        return "reproduced (the paper's value is inside our interval)"
    gap = row["ours"] - row["paper"]
    return f"{'above' if gap > 0 else 'below'} the paper by {abs(gap):.1f} points"


def _interval_text(row: pd.Series) -> str:
    if math.isnan(row["low"]):
        return "—"
    return f"{_number(row['low'], row['quantity'])}–{_number(row['high'], row['quantity'])}"


def _split_quantity(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep's and the by-size rows with their quantity split into (item, metric)."""
    if table.empty:
        return table.assign(item=pd.Series(dtype=str), metric=pd.Series(dtype=str))
    parts = table["quantity"].str.split(": ", n=1, expand=True)
    return table.assign(item=parts[0], metric=parts[1])


def render_sweep(table: pd.DataFrame) -> list[str]:
    """The autoencoder sweep: one row per point, and a verdict computed from the same rows."""
    rows = _split_quantity(table[table["section"] == SWEEP])
    if rows.empty:
        return []
    points = list(dict.fromkeys(rows["item"]))
    metrics = list(dict.fromkeys(rows["metric"]))
    cell = {(r["item"], r["metric"]): r for _, r in rows.iterrows()}
    lines = [
        "## Table 3 settled by experiment: the autoencoder sweep",
        "",
        "Each point is an autoencoder trained on the run's clean training images and put in front of the same "
        "classifier (`purification.autoencoder_sweep`, config/autoencoder-sweep.yaml). Recovery: the paper's Table 3 "
        "metric (successful adversarials classified right after the autoencoder; paper overall "
        f"{PAPER_TABLE3['overall']:.2f} %); adaptive: accuracy under the attack run through autoencoder + classifier.",
        "",
        "| point | autoencoder | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for point in points:
        first = next(cell[(point, m)] for m in metrics if (point, m) in cell)
        setting = str(first["comparison"]).split("autoencoder: ", 1)[-1]
        values = []
        for m in metrics:
            r = cell.get((point, m))
            if r is None:
                values.append("—")
                continue
            text = _number(r["ours"], m)
            if "recovery overall" in m and not math.isnan(r["low"]):
                text += f" ({_interval_text(r)})"
            values.append(text)
        lines.append(f"| {point} | {setting} | " + " | ".join(values) + " |")
    lines += ["", "**Verdict on Table 3:** " + sweep_verdict(rows), ""]
    return lines


def sweep_verdict(rows: pd.DataFrame) -> str:
    """Which point comes closest to the paper's recovery and at what clean cost, and what the adaptive attack
    leaves of every point's recovery: sentences made from the sweep's rows."""

    def values(metric):
        hit = rows[rows["metric"] == metric]
        return dict(zip(hit["item"], hit["ours"]))

    overall = values("recovery overall (%)")
    clean, without = values("clean accuracy through it (%)"), values("clean accuracy without it (%)")
    adaptive = values("adaptive accuracy through it (%)")
    if not overall:
        return "no point has a recovery."
    paper = PAPER_TABLE3["overall"]
    closest = min(overall, key=lambda p: abs(overall[p] - paper))
    best = max(overall, key=overall.get)
    r = rows[(rows["item"] == closest) & (rows["metric"] == "recovery overall (%)")].iloc[0]
    inside = not math.isnan(r["low"]) and r["low"] <= paper <= r["high"]
    text = [
        f"closest to the paper's {paper:.2f} % is {closest} at {overall[closest]:.1f} % ({_interval_text(r)}; the "
        f"paper's value is {'inside' if inside else 'outside'} that interval)"
        + (
            f", at a clean accuracy of {clean[closest]:.1f} % through it against {without[closest]:.1f} % without"
            if closest in clean and closest in without
            else ""
        )
        + ".",
    ]
    if best != closest:
        text.append(
            f"The highest recovery, {overall[best]:.1f} %, is {best}'s"
            + (f", at {clean[best]:.1f} % clean accuracy" if best in clean else "")
            + "."
        )
    if adaptive:
        top = max(adaptive, key=adaptive.get)
        text.append(
            f"Under the adaptive attack through it, no point keeps more than {adaptive[top]:.1f} % accuracy "
            f"({top}; lowest {min(adaptive.values()):.1f} %)"
            + (
                ": the recovery above holds only against attacks that ignore the autoencoder."
                if adaptive[top] < 10
                else "."
            )
        )
    return " ".join(text)


def render_by_size(table: pd.DataFrame) -> list[str]:
    """Recovery against the perturbation's size (L2 quartiles) per attack, and what it says of DeepFool."""
    rows = _split_quantity(table[table["section"] == BY_SIZE])
    if rows.empty:
        return []
    point = str(rows.iloc[0]["comparison"]).split("autoencoder ", 1)[-1]
    lines = [
        f"### Recovery against perturbation size (autoencoder {point}, the point closest to the paper)",
        "",
        "| attack, L2 quartile | median L2 | recovered (%) | 95 % interval | images |",
        "|---|---|---|---|---|",
    ]
    items = list(dict.fromkeys(rows["item"]))
    medians, recovered = {}, {}
    for item in items:
        l2 = rows[(rows["item"] == item) & (rows["metric"] == "median L2")].iloc[0]
        rec = rows[(rows["item"] == item) & (rows["metric"] == "recovered (%)")].iloc[0]
        attack = item.split(",")[0]
        medians.setdefault(attack, []).append(float(l2["ours"]))
        recovered.setdefault(attack, []).append(float(rec["ours"]))
        lines.append(
            f"| {item} | {l2['ours']:.3f} | {rec['ours']:.1f} | {_interval_text(rec)} | {int(rec['n'])} |"
        )
    sentences = []
    for attack in medians:
        sentences.append(
            f"{attack}: median L2 {float(np.median(medians[attack])):.3f}, recovery {recovered[attack][0]:.1f} % in "
            f"the smallest quarter and {recovered[attack][-1]:.1f} % in the largest"
        )
    lines += ["", "By attack: " + "; ".join(sentences) + ".", ""]
    return lines


def _autoencoder_setting(r: pd.Series) -> str:
    noise = "?" if pd.isna(r["noise_std"]) else f"{r['noise_std']:g}"
    epochs = "?" if pd.isna(r["epochs"]) else f"{int(r['epochs'])}"
    return f"widths {r['widths']}, code {int(r['code_values'])} values, noise {noise}, {epochs} epochs"


def render_cross(cross: pd.DataFrame, data_label: str) -> list[str]:
    """The cross of classifiers and autoencoders (`sweep.autoencoder_cross`): one cell per pair with its recovery
    (overall), clean accuracy through the autoencoder and adaptive accuracy, then how far changing the
    autoencoder and changing the classifier each move the recovery, computed from the same cells."""
    if cross.empty:
        return []
    overall = f"recovery_{POOLED}"
    classifiers = list(dict.fromkeys(cross["classifier"]))
    autoencoders = list(dict.fromkeys(cross["autoencoder"]))
    cell = {(r["classifier"], r["autoencoder"]): r for _, r in cross.iterrows()}
    first_of = {a: cross[cross["autoencoder"] == a].iloc[0] for a in autoencoders}
    without = {
        c: float(cross[cross["classifier"] == c].iloc[0]["clean_accuracy_without"]) for c in classifiers
    }
    lines = [
        "## Classifier and autoencoder apart: the cross",
        "",
        f"Every autoencoder in front of every classifier, on the same test images ({data_label}); each model is the "
        "one the named run trained (the autoencoders' settings in the column heads; the classifiers' clean accuracy "
        "on these images beside their names). The paper's three attacks at its epsilon are run against each "
        "classifier, so each row has its own successful adversarials. "
        "A cell: recovery overall (the paper's Table 3 metric, 95 % Wilson interval) / clean accuracy through the "
        "autoencoder / accuracy under the adaptive attack through autoencoder + classifier. Files: "
        "`autoencoder_cross.csv` (`advdefense-docs cross`).",
        "",
        "| classifier (clean accuracy) | "
        + " | ".join(f"autoencoder {a} ({_autoencoder_setting(first_of[a])})" for a in autoencoders)
        + " |",
        "|---|" + "---|" * len(autoencoders),
    ]
    for c in classifiers:
        texts = []
        for a in autoencoders:
            r = cell[(c, a)]
            n = int(r["successful_overall"])
            low, high = wilson(float(r[overall]) / 100 * n, n)
            adaptive = "—" if pd.isna(r["adaptive_accuracy"]) else f"{r['adaptive_accuracy']:.1f} %"
            texts.append(
                f"{r[overall]:.1f} % ({low:.1f}-{high:.1f}, {n} adv.) / {r['clean_accuracy']:.1f} % / {adaptive}"
            )
        lines.append(f"| {c} ({without[c]:.1f} %) | " + " | ".join(texts) + " |")
    base_a, base_c = autoencoders[0], classifiers[0]
    by_autoencoder = {
        a: [float(cell[(c, a)][overall] - cell[(c, base_a)][overall]) for c in classifiers]
        for a in autoencoders[1:]
    }
    by_classifier = {
        c: [float(cell[(c, a)][overall] - cell[(base_c, a)][overall]) for a in autoencoders]
        for c in classifiers[1:]
    }

    def signed(values):
        return ", ".join(f"{v:+.1f}" for v in values)

    sentences = [
        f"Autoencoder {a} instead of {base_a}: {signed(v)} points of recovery (classifier {', '.join(classifiers)})"
        for a, v in by_autoencoder.items()
    ] + [
        f"classifier {c} instead of {base_c}: {signed(v)} points (autoencoder {', '.join(autoencoders)})"
        for c, v in by_classifier.items()
    ]
    autoencoder_effect = float(np.mean([abs(v) for vs in by_autoencoder.values() for v in vs]))
    classifier_effect = float(np.mean([abs(v) for vs in by_classifier.values() for v in vs]))
    larger = "the autoencoder" if autoencoder_effect >= classifier_effect else "the classifier"
    lines += [
        "",
        "; ".join(sentences)
        + f". Mean size of the change: {autoencoder_effect:.1f} points for the autoencoder, {classifier_effect:.1f} "
        f"for the classifier: {larger} makes more of the recovery.",
        "",
    ]
    return lines


def render(table: pd.DataFrame, title: str, data_label: str) -> str:
    """The page in markdown, from the gathered CSV alone."""
    extra = table[table["section"].isin([SWEEP, BY_SIZE])]
    table = table[~table["section"].isin([SWEEP, BY_SIZE])]
    seeds = int(table["seeds"].max()) if len(table) else 0
    lines = [
        f"# {title}",
        "",
        f"Generated by `advdefense-reproduction` from `{data_label}` results over {seeds} seed(s); every number "
        "below comes from the CSV beside this page. Percentages unless marked AUROC; interval: 95 %.",
        "",
        "| quantity | paper | ours | 95 % interval | images | verdict | comparison |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        interval = (
            "—"
            if math.isnan(row["low"])
            else f"{_number(row['low'], row['quantity'])}–{_number(row['high'], row['quantity'])} ({row['interval']})"
        )
        n = (
            f"{int(row['n'])}" + (f" x {int(row['seeds'])} seeds" if row["seeds"] > 1 else "")
            if row["n"]
            else "—"
        )
        lines.append(
            f"| {row['quantity']} | {_number(row['paper'], row['quantity'], 2)} | {_number(row['ours'], row['quantity'])} "
            f"| {interval} | {n} | {verdict(row)} | {row['comparison']} |"
        )
    compared = table[~table["paper"].isna()]
    held = sum(verdict(r).startswith("reproduced") for _, r in compared.iterrows())
    lines += [
        "",
        f"**Verdict:** {held} of the {len(compared)} numbers of the paper that have a counterpart here are inside "
        f"our 95 % interval; the others are listed with their gap above.",
        "",
    ]
    lines += render_sweep(extra) + render_by_size(extra)
    return "\n".join(lines)


def write_page(table: pd.DataFrame, csv_path, md_path, title: str, data_label: str) -> None:
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(render(table, title, data_label))


def read_table(path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise PipelineFileError(f"{path}: not a reproduction table ({exc})") from None
    missing = [f.name for f in fields(Row) if f.name not in table.columns]
    if missing:
        raise PipelineFileError(f"{path}: not a reproduction table (missing columns {', '.join(missing)})")
    return table


def main(argv: list[str] | None = None) -> int:
    """`advdefense-reproduction CSV --title T --data D [--out PAGE]`: render the page of a gathered CSV."""
    parser = argparse.ArgumentParser(prog="advdefense-reproduction", description=main.__doc__)
    parser.add_argument("csv")
    parser.add_argument("--title", default="Does the paper hold up?")
    parser.add_argument("--data", default="CIFAR-10 (JPEG copy)")
    parser.add_argument("--out", help="write the page here (default: print it)")
    args = parser.parse_args(argv)
    page = render(read_table(args.csv), args.title, args.data)
    if args.out:
        Path(args.out).write_text(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def reproduction_page(files: dict[str, list], epsilon: float, data_label: str, title: str, csv_path, md_path):
    """The rule's job: `files` maps metrics, summaries and (where the run has them) table3, table4, table5 and
    models to one path per run; writes the gathered CSV and the page."""
    runs = len(files["metrics"])
    per_seed = []
    for i in range(runs):
        one = {key: (paths[i] if paths else None) for key, paths in files.items()}
        run = RunFiles(
            Path(one["metrics"]),
            Path(one["summaries"]),
            *(
                Path(one[k]) if one.get(k) else None
                for k in ("table3", "table4", "table5", "models", "sweep", "sweep_by_size")
            ),
        )
        per_seed.append(collect_run(run, data_label, epsilon))
    table = gather(per_seed)
    write_page(table, csv_path, md_path, title, data_label)
    return table
