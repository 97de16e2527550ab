"""The autoencoder sweep (issue 41: the paper's Table 3 settled by experiment).

Each point of `purification.autoencoder_sweep.points` is an autoencoder trained on the run's clean images with
its own code size, input noise or training length, in front of the run's one classifier as purifier
`autoencoder.<point>`. Per point this module reads the point's files and reports:

- `recovery_<attack>`: the paper's Table 3 metric, the % of successful adversarials classified right after
  purification, per sweep attack at the sweep's epsilon, and `recovery_overall` pooled over them (every
  successful adversarial counts once: the paper's attacks on the same images, pooled as Table 3 pools);
- `clean_accuracy`: accuracy on clean test images through the autoencoder (`clean_accuracy_without`: the bare
  classifier on the same images), what the purifier costs where nobody attacks;
- `test_psnr`: the autoencoder's reconstruction PSNR on the clean test images (dB);
- `adaptive_accuracy`: accuracy under the adaptive attack run end to end through autoencoder + classifier (the
  honest number: a purifier that only works against attacks that ignore it scores near 0 here);
- by perturbation size (`sweep_by_size`): recovery in quartiles of each successful adversarial's L2 norm,
  per attack, which shows how much of an attack's recovery is only the size of its perturbations (DeepFool's
  are a fraction of FGSM's and PGD's).

Torch-free: the tables read files; the figure is matplotlib.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .attack_files import AttackArrays, read_attack_file  # noqa: E402
from .errors import PipelineFileError  # noqa: E402
from .h5io import atomic_path  # noqa: E402
from .plan.names import POOLED  # noqa: E402
from .plan.purifier_specs import sweep_purifier  # noqa: E402
from .purified_files import PurifiedArrays, read_purified  # noqa: E402

PAPER_RECOVERY = (
    52.39  # the paper's Table 3, overall: successful adversarials classified right after its autoencoder
)
SIZE_BINS = 4  # quartiles of the perturbation's L2 norm


def _pct(mask) -> float:
    mask = np.asarray(mask, dtype=bool)
    return float(100.0 * mask.mean()) if mask.size else float("nan")


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _aligned(purified: PurifiedArrays, attack: AttackArrays, path) -> np.ndarray:
    """The attack file's L2 norms in the purified file's order (both hold the same test positions)."""
    order = {int(i): k for k, i in enumerate(attack.index)}
    try:
        return np.asarray([attack.l2[order[int(i)]] for i in purified.index], dtype=float)
    except KeyError as exc:
        raise PipelineFileError(f"{path}: test position {exc.args[0]} is not in its attack file") from None


def point_row(
    point: str, settings: dict, metrics_path, clean_path, purified: dict, adaptive_path, adaptive_key
):
    """One point's row (see the module docstring) and its per-image records for the size analysis.
    `purified`: {(attack, eps): (purified file, attack file)}."""
    metrics = json.loads(Path(metrics_path).read_text())
    clean = read_purified(clean_path)
    # what the autoencoder is, from its metrics (a brought one's come from its file and its own run's metrics)
    widths = (metrics.get("architecture") or {}).get("widths") or settings.get("widths")
    row = {
        "point": point,
        "purifier": sweep_purifier(point),
        "source": "brought" if "checkpoint" in settings else "trained here",
        "widths": "x".join(str(w) for w in widths),
        "code_values": int(metrics["code_values"]),
        "code_fraction": float(metrics["code_fraction"]),
        "noise_std": _number(metrics.get("noise_std", settings.get("noise_std"))),
        "epochs": _number(metrics.get("epochs", settings.get("epochs"))),
        "test_psnr": float(metrics["test_psnr"]),
        "clean_accuracy": _pct(clean.pred_purified == clean.label),
        "clean_accuracy_without": _pct(clean.pred_clean == clean.label),
        "clean_images": int(len(clean.label)),
    }
    pooled, records = [], []
    for (attack, _eps), (purified_path, attack_path) in purified.items():
        p = read_purified(purified_path)
        success = p.success.astype(bool)
        right = p.pred_purified == p.label
        row[f"recovery_{attack}"] = _pct(right[success])
        row[f"successful_{attack}"] = int(success.sum())
        pooled.append(right[success])
        l2 = _aligned(p, read_attack_file(attack_path, require=("index", "l2")), purified_path)
        records.append(pd.DataFrame({"attack": attack, "l2": l2[success], "recovered": right[success]}))
    row[f"recovery_{POOLED}"] = _pct(np.concatenate(pooled)) if pooled else float("nan")
    row["successful_overall"] = int(sum(len(x) for x in pooled))
    if adaptive_path is not None:
        a = read_attack_file(adaptive_path, require=("label", "pred_adv"))
        row["adaptive_attack"] = f"{adaptive_key[0]} (eps={adaptive_key[1]:g})"
        row["adaptive_accuracy"] = _pct(a.pred_adv == a.label)
        row["adaptive_images"] = len(a)
    else:
        row["adaptive_attack"], row["adaptive_accuracy"], row["adaptive_images"] = "", float("nan"), 0
    by_size = pd.concat(records, ignore_index=True) if records else pd.DataFrame()
    return row, by_size


def sweep_by_size(records: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Recovery (%) per point, attack and quartile of the successful adversarials' L2 norm (quartiles of each
    attack's own norms at that point), with each bin's median norm and count."""
    rows = []
    for point, frame in records.items():
        for attack, group in frame.groupby("attack", sort=False):
            if len(group) == 0:
                continue
            bins = min(SIZE_BINS, len(group))
            ranks = group["l2"].rank(method="first")
            which = np.minimum(((ranks - 1) * bins // len(group)).astype(int), bins - 1)
            for b in range(bins):
                cell = group[which == b]
                rows.append(
                    {
                        "point": point,
                        "attack": attack,
                        "size_bin": b + 1,
                        "bins": bins,
                        "median_l2": float(cell["l2"].median()),
                        "images": int(len(cell)),
                        "recovery": _pct(cell["recovered"].to_numpy()),
                    }
                )
    return pd.DataFrame(rows)


def closest_point(table: pd.DataFrame, target: float = PAPER_RECOVERY) -> str | None:
    """The point whose overall recovery comes closest to the paper's (None where no point has one)."""
    values = table.set_index("point")[f"recovery_{POOLED}"].dropna()
    if values.empty:
        return None
    return str((values - target).abs().idxmin())


def autoencoder_sweep_figure(table: pd.DataFrame, by_size: pd.DataFrame, out_path, title: str = "") -> None:
    """Left: overall recovery against clean accuracy through the autoencoder, every point labelled (its
    adaptive accuracy beside the name), the paper's 52.39 % marked. Right: recovery against the perturbation's
    L2 norm (quartiles) per attack, for the point closest to the paper's recovery."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    x, y = table["clean_accuracy"], table[f"recovery_{POOLED}"]
    left.scatter(x, y, c="tab:blue", zorder=3)
    for _, r in table.iterrows():
        adaptive = "" if math.isnan(r["adaptive_accuracy"]) else f" (adaptive {r['adaptive_accuracy']:.0f} %)"
        left.annotate(
            f"{r['point']}{adaptive}",
            (r["clean_accuracy"], r[f"recovery_{POOLED}"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    left.axhline(
        PAPER_RECOVERY, color="tab:red", linestyle="--", label=f"paper, Table 3 overall ({PAPER_RECOVERY} %)"
    )
    left.set_xlabel("clean accuracy through the autoencoder (%)")
    left.set_ylabel("successful adversarials classified right after it (%)")
    left.set_title("Recovery against clean accuracy, per sweep point")
    left.margins(x=0.3, y=0.15)  # room for the labels
    left.legend(loc="best", fontsize=8)
    point = closest_point(table)
    if point is not None and not by_size.empty:
        for attack, group in by_size[by_size["point"] == point].groupby("attack", sort=False):
            right.plot(group["median_l2"], group["recovery"], marker="o", label=attack)
        right.legend(fontsize=8)
    right.set_xlabel("L2 norm of the perturbation (median of its quartile)")
    right.set_ylabel("recovered (%)")
    right.set_title(f"Recovery against perturbation size ({point})")
    if title:
        fig.suptitle(title)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def write_autoencoder_sweep(
    points: dict[str, dict],
    columns: list[tuple[str, float]],
    files: dict,
    adaptive: tuple[str, float] | None,
    csv_path,
    by_size_path,
    figure_path,
) -> pd.DataFrame:
    """The sweep's table, its by-size table (CSVs) and figure. `points`: {point:
    training settings}; `files[point]`: {"metrics", "clean", "purified": {(attack, eps): (purified, attack file)},
    "adaptive": path or None}."""
    rows, records = [], {}
    for point, settings in points.items():
        f = files[point]
        row, by_size = point_row(
            point, settings, f["metrics"], f["clean"], f["purified"], f["adaptive"], adaptive
        )
        rows.append(row)
        records[point] = by_size
    table = pd.DataFrame(rows)
    size_table = sweep_by_size(records)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(by_size_path) as tmp:
        size_table.to_csv(tmp, index=False, float_format="%.4f")
    autoencoder_sweep_figure(
        table,
        size_table,
        figure_path,
        "Autoencoder sweep at eps " + ", ".join(sorted({f"{e:g}" for _, e in columns})),
    )
    return table


# ----------------------------------------------------------------------------- the 2 x 2 cross (issue 41 item 3)
CROSS_COLUMNS = (  # what a cell keeps of its sweep row
    "widths",
    "code_values",
    "noise_std",
    "epochs",
    "test_psnr",
    "clean_accuracy_without",
    "clean_accuracy",
    "clean_images",
    "recovery_fgsm",
    "successful_fgsm",
    "recovery_pgd",
    "successful_pgd",
    "recovery_deepfool",
    "successful_deepfool",
    f"recovery_{POOLED}",
    "successful_overall",
    "adaptive_attack",
    "adaptive_accuracy",
    "adaptive_images",
)


def parse_cross_cell(text: str) -> tuple[str, str, Path, str]:
    """`CLASSIFIER,AUTOENCODER=SWEEP_TABLE:POINT` (what `advdefense-docs cross --cell` takes) -> its parts."""
    try:
        names, where = text.split("=", 1)
        classifier, autoencoder = (s.strip() for s in names.split(","))
        table, point = where.rsplit(":", 1)
    except ValueError:
        raise ValueError(
            f"cross cell {text!r}: expected CLASSIFIER,AUTOENCODER=SWEEP_TABLE:POINT, "
            "e.g. full-size,mini=results/tables/cifar10-jpeg-seed0/autoencoder_sweep.csv:mini_ae"
        ) from None
    if not (classifier and autoencoder and table and point):
        raise ValueError(f"cross cell {text!r}: a classifier, an autoencoder, a sweep table and a point")
    return classifier, autoencoder, Path(table), point


def autoencoder_cross(cells: list[tuple[str, str, Path, str]]) -> pd.DataFrame:
    """The cross of classifiers and autoencoders, each cell one sweep point of a run whose classifier is that
    cell's (`cells`: (classifier, autoencoder, sweep table, point)). Every classifier meets every autoencoder once;
    cells that share a classifier must show it the same clean images with the same accuracy (else they are not
    the same classifier on the same test images, and the cross would mix them)."""
    rows, seen = [], set()
    for classifier, autoencoder, table_path, point in cells:
        if (classifier, autoencoder) in seen:
            raise ValueError(f"cross cell ({classifier}, {autoencoder}) is given twice")
        seen.add((classifier, autoencoder))
        if not Path(table_path).is_file():
            raise PipelineFileError(f"{table_path}: no such sweep table (cell {classifier}, {autoencoder})")
        table = pd.read_csv(table_path)
        missing = [c for c in ("point", *CROSS_COLUMNS) if c not in table.columns]
        if missing:
            raise PipelineFileError(f"{table_path}: not an autoencoder sweep table (no column {missing[0]})")
        hit = table[table["point"] == point]
        if hit.empty:
            raise PipelineFileError(
                f"{table_path}: no sweep point {point!r} (cell {classifier}, {autoencoder}); it has "
                + ", ".join(map(str, table["point"]))
            )
        r = hit.iloc[0]
        rows.append(
            {
                "classifier": classifier,
                "autoencoder": autoencoder,
                "point": point,
                **{c: r[c] for c in CROSS_COLUMNS},
            }
        )
    cross = pd.DataFrame(rows)
    classifiers = list(dict.fromkeys(cross["classifier"]))
    autoencoders = list(dict.fromkeys(cross["autoencoder"]))
    if len(classifiers) < 2 or len(autoencoders) < 2 or len(cross) != len(classifiers) * len(autoencoders):
        raise ValueError(
            f"a cross needs every classifier ({', '.join(classifiers)}) with every autoencoder "
            f"({', '.join(autoencoders)}), at least 2 x 2; it has {len(cross)} cells"
        )
    for classifier, group in cross.groupby("classifier", sort=False):
        shown = group[["clean_accuracy_without", "clean_images"]].drop_duplicates()
        if len(shown) > 1:
            raise ValueError(
                f"cross cells of classifier {classifier!r} disagree on its clean accuracy without autoencoder "
                f"({', '.join(f'{a:.2f} % of {int(n)}' for a, n in shown.itertuples(index=False))}): not the same "
                "classifier on the same test images"
            )
    return cross


def write_autoencoder_cross(cells, out_path) -> pd.DataFrame:
    cross = autoencoder_cross(cells)
    with atomic_path(out_path) as tmp:
        cross.to_csv(tmp, index=False, float_format="%.4f")
    return cross
