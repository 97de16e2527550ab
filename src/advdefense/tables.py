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

from .attack_files import read_attack_file
from .errors import ConfigError, PipelineFileError
from .h5io import atomic_path
from .plan.detector_specs import PAPER_DETECTOR, detector_title
from .plan.names import POOLED, eps_tag, fpr_label
from .plan.purifier_specs import PURIFIERS, purifier_title
from .purified_files import read_purified


def format_cell(value, digits: int) -> str:
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
        lines.append("| " + " | ".join(format_cell(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_table(
    table: pd.DataFrame, csv_path, md_path, title: str, notes: list[str] | None = None, digits: int = 2
) -> None:
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp)
    text = f"## {title}\n\n{to_markdown(table, digits)}\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(text)


# ----------------------------------------------------------------------------- Table 3: purification
PAPER_TABLE3 = {"fgsm": 47.92, "pgd": 53.62, "deepfool": 55.90, POOLED: 52.39}
# rows of the classifier alone, then one block per purifier (`table3_rows`)
TABLE3_BARE_ROWS = [
    "Successful adversarials: count",
    "Successful adversarials: no purifier",
    "All attacked images: no purifier",
    "Clean images: no purifier",
]
TABLE3_PURIFIER_ROWS = [
    "successful adversarials after purification",
    "all attacked images after purification",
    "adaptive attack through it",
    "clean images",
]
MASKING_ROW = "gradient-free attack beats the gradient attacks"  # where a gradient-free attack is a column
# per purifier and epsilon: an image counts as defended only if every adaptive attack at that epsilon left it right
WORST_ROW = "worst case over the adaptive attacks at its eps"


def table3_rows(purifiers: list[str], masking: bool = False) -> list[str]:
    """Table 3's row labels: TABLE3_BARE_ROWS, then '<purifier title>: <row>' of TABLE3_PURIFIER_ROWS (and
    MASKING_ROW where a gradient-free attack is a column) for each purifier (titles from the registry,
    `plan.purifier_specs`)."""
    rows = TABLE3_PURIFIER_ROWS + [WORST_ROW] + ([MASKING_ROW] if masking else [])
    return TABLE3_BARE_ROWS + [f"{purifier_title(p)}: {row}" for p in purifiers for row in rows]


def worst_case(files: list) -> tuple[float, int]:
    """Accuracy (%) on the images that every one of the adaptive attack files (one epsilon, one purifier) holds,
    an image counting as right only where every attack left it right (the per-image worst case), and how many
    images that is."""
    right: dict[int, bool] = {}
    seen: dict[int, int] = {}
    for path in files:
        a = read_attack_file(path, require=("index", "label", "pred_adv"))
        for i, ok in zip(a.index.tolist(), (a.pred_adv == a.label).tolist()):
            right[i] = right.get(i, True) and ok
            seen[i] = seen.get(i, 0) + 1
    common = [i for i, k in seen.items() if k == len(files)]
    return _pct([right[i] for i in common]), len(common)


def _pct(mask_or_values) -> float:
    values = np.asarray(mask_or_values, dtype=float)
    return float(100.0 * values.mean()) if values.size else float("nan")


def _masking_check(data: dict, block: list[str], columns: list[tuple[str, float]], gradient_free) -> None:
    """The purifier's row `block[4]`: in the column of a gradient-free attack (Square), 1 where its adaptive
    accuracy is below that of every gradient attack at the same eps (the gradients are masked: Carlini et al.
    2019), else 0; empty in the other columns and where no gradient attack ran at that eps; 'overall': 1 where
    any column says 1."""
    flags = []
    for attack, eps in columns:
        col = data[column_name(attack, eps)]
        col[block[4]] = float("nan")
        if attack not in gradient_free:
            continue
        rivals = [
            data[column_name(a, e)][block[2]] for a, e in columns if e == eps and a not in gradient_free
        ]
        rivals = [r for r in rivals if not math.isnan(r)]
        mine = col[block[2]]
        if rivals and not math.isnan(mine):
            col[block[4]] = float(mine < min(rivals))
            flags.append(col[block[4]])
    data[POOLED][block[4]] = max(flags) if flags else float("nan")


def table3(
    purifiers: list[str],
    columns: list[tuple[str, float]],
    purified: dict,
    adaptive: dict,
    clean: dict,
    gradient_free: frozenset | set = frozenset(),
) -> pd.DataFrame:
    """Accuracy (%) of the classifier, rows as `table3_rows(purifiers)`, one column per (attack, eps) plus
    'overall' (all columns pooled). `purified` and `adaptive` map (purifier, attack, eps) to file paths
    (adaptive may be empty: no adaptive attack), `clean` each purifier to its clean test file; `gradient_free`
    names the attacks that read no gradient (the masking check, `_masking_check`)."""
    gradient_free = set(gradient_free) & {attack for attack, _ in columns}
    rows = table3_rows(purifiers, masking=bool(gradient_free))
    data: dict[str, dict] = {column_name(*key): {} for key in columns}
    data[POOLED] = {}
    for i, purifier in enumerate(purifiers):
        block = [f"{purifier_title(purifier)}: {row}" for row in [*TABLE3_PURIFIER_ROWS, MASKING_ROW]]
        pooled = {k: [] for k in ("success", "before", "after", "adaptive")}
        for key in columns:
            if (purifier, *key) not in purified:
                raise ConfigError(
                    f"tables.table3.attacks: no file of {key[0]} at eps {key[1]} through purifier {purifier!r} "
                    "(was the attack generated and purified?)"
                )
            p = read_purified(purified[(purifier, *key)])
            succ = p.success.astype(bool)
            after_ok = p.pred_purified == p.label
            before_ok = p.pred_adv == p.label
            col = data[column_name(*key)]
            if i == 0:
                col.update(
                    {
                        TABLE3_BARE_ROWS[0]: int(succ.sum()),
                        TABLE3_BARE_ROWS[1]: _pct(before_ok[succ]),
                        TABLE3_BARE_ROWS[2]: _pct(before_ok),
                    }
                )
            col[block[0]] = _pct(after_ok[succ])
            col[block[1]] = _pct(after_ok)
            for k, v in (("success", succ), ("before", before_ok), ("after", after_ok)):
                pooled[k].append(v)
            if (purifier, *key) in adaptive:
                a = read_attack_file(adaptive[(purifier, *key)], require=("label", "pred_adv"))
                ok = a.pred_adv == a.label
                col[block[2]] = _pct(ok)
                pooled["adaptive"].append(ok)
            else:
                col[block[2]] = float("nan")
        cat = {k: np.concatenate(v) if v else np.array([]) for k, v in pooled.items()}
        succ = cat["success"].astype(bool)
        if i == 0:
            data[POOLED].update(
                {
                    TABLE3_BARE_ROWS[0]: int(succ.sum()),
                    TABLE3_BARE_ROWS[1]: _pct(cat["before"][succ]) if succ.size else float("nan"),
                    TABLE3_BARE_ROWS[2]: _pct(cat["before"]),
                }
            )
        data[POOLED][block[0]] = _pct(cat["after"][succ]) if succ.size else float("nan")
        data[POOLED][block[1]] = _pct(cat["after"])
        data[POOLED][block[2]] = _pct(cat["adaptive"])
        c = read_purified(clean[purifier])
        for col in data.values():
            col[TABLE3_BARE_ROWS[3]] = _pct(c.pred_clean == c.label)
            col[block[3]] = _pct(c.pred_purified == c.label)
        worst_row = f"{purifier_title(purifier)}: {WORST_ROW}"
        for eps in sorted({e for _, e in columns}):
            files = [
                adaptive[(purifier, a, e)] for a, e in columns if e == eps and (purifier, a, e) in adaptive
            ]
            value = worst_case(files)[0] if files else float("nan")
            for a, e in columns:
                if e == eps:
                    data[column_name(a, e)][worst_row] = value
        data[POOLED][worst_row] = float("nan")  # epsilons differ between columns: no worst case across them
        if gradient_free:
            _masking_check(data, block, columns, gradient_free)
    # object columns built from Series: the count row stays integer next to the percentages
    table = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in data.items()}).reindex(rows)
    table.index.name = "row"
    return table


def column_name(attack: str, eps: float) -> str:
    return f"{attack} (eps={eps_tag(eps)})"


def write_table3(
    purifiers: list[str],
    columns: list[tuple[str, float]],
    purified: dict,
    adaptive: dict,
    clean: dict,
    csv_path,
    md_path,
    gradient_free: frozenset | set = frozenset(),
) -> None:
    """Table 3 with its notes (see `table3` for the arguments)."""
    notes = [
        "Accuracy (%) of the classifier on the test images attacked at each epsilon; 'overall' pools all columns.",
        "Successful adversarials: images the attack made the undefended classifier misclassify (the paper's rows).",
        "Adaptive attack: the same attack and epsilon run end to end through purifier + classifier (white box).",
        "Worst case over the adaptive attacks at its eps: an image counts as right only where every adaptive attack "
        "at that epsilon (every column of that epsilon) left it right, on the images they all attacked: the "
        "defended accuracy a reader should take away for that purifier and epsilon.",
    ]
    for p in purifiers:
        spec = PURIFIERS.get(p)
        if spec is not None:
            notes.append(
                f"{spec.title}: {spec.reference}; adaptive attack through {spec.adaptive_label}"
                + (f"; published: {spec.anchor}" if spec.anchor else "")
                + "."
            )
    table = table3(purifiers, columns, purified, adaptive, clean, gradient_free)
    if any(row.endswith(MASKING_ROW) for row in table.index):  # a gradient-free attack is a column
        notes.append(
            "Gradient-free check: 1 where the gradient-free attack ("
            + ", ".join(sorted(set(gradient_free) & {attack for attack, _ in columns}))
            + ") through the purifier leaves a lower accuracy than every gradient attack at its eps: those "
            "gradients are masked and the adaptive rows overstate the purifier (Carlini et al. 2019)."
        )
        for p in purifiers:
            if table.loc[f"{purifier_title(p)}: {MASKING_ROW}", POOLED] == 1:
                notes.append(
                    f"GRADIENT MASKING: the gradient-free attack beats the gradient attacks through {p}."
                )
    notes.append(
        "Paper (autoencoder, successful adversarials after purification): "
        + ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE3.items())
        + "; before: 0 by definition."
    )
    write_table(
        table,
        csv_path,
        md_path,
        "Table 3: purification (" + ", ".join(purifier_title(p) for p in purifiers) + ")",
        notes,
    )


# ----------------------------------------------------------------------------- Tables 4 and 5: detection
PAPER_TABLE4 = {"fgsm": 97.12, "pgd": 97.07, "deepfool": 63.17, POOLED: 83.6}
NOT_TRAINED = "did not train"


def _rate_columns(fprs) -> dict:
    out = {}
    for fpr in fprs:
        label = fpr_label(fpr)
        out[f"tpr_at_fpr{label}"] = f"TPR at {label}% FPR (%)"
    for fpr in fprs:
        label = fpr_label(fpr)
        out[f"fpr_test_at_fpr{label}"] = f"test FPR at the {label}% threshold (%)"
    return out


def _cell(row: pd.Series, column: str):
    value = row[column]
    if column in ("n_clean", "n_attacked", "n_noop"):
        return int(value)
    if column == "auroc":
        return float(value)
    return 100.0 * float(value)


def _select(evaluation: pd.DataFrame, train: str, test: str, which: str) -> pd.Series | None:
    sel = evaluation[
        (evaluation["train"] == train) & (evaluation["test"] == test) & (evaluation["set"] == which)
    ]
    return None if sel.empty else sel.iloc[0]


def trained_flag(value, path) -> bool:
    """The `trained` cell of a detector evaluation (evaluation.csv): a bool, or the words True/False after a CSV
    round trip; anything else is an error naming `path` (never the truth value of a string)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if str(value) in ("True", "False"):
        return str(value) == "True"
    raise PipelineFileError(f"{path}: column 'trained' holds {value!r}, expected True or False")


def _trained(row: pd.Series) -> bool:
    return trained_flag(row["trained"], "detector evaluation") if "trained" in row else True


def table4(latent_eval: pd.DataFrame, keys: list[str], fprs) -> pd.DataFrame:
    """Paper Table 4: the latent detector of each key on that key's test set, and the pooled one; honest
    sets first, then the paper's all-images sets."""
    columns = {
        "auroc": "AUROC",
        **_rate_columns(fprs),
        "accuracy": f"accuracy at {fpr_label(max(fprs))}% FPR (%)",
        "n_attacked": "attacked test images",
        "n_noop": "unchanged by the attack",
    }
    rows = {}
    for which, suffix in (("honest", ""), ("all", " (all images)")):
        for key in keys + [POOLED]:
            row = _select(latent_eval, key, key, which)
            if row is None:
                raise ConfigError(f"tables: no latent-detector evaluation for {key} ({which} set)")
            label = key + suffix
            if not _trained(row):
                rows[label] = dict.fromkeys(columns.values(), NOT_TRAINED)
                continue
            rows[label] = {title: _cell(row, col) for col, title in columns.items()}
            rows[label]["paper accuracy (%)"] = (
                PAPER_TABLE4.get(key.split("_eps")[0], float("nan")) if which == "all" else float("nan")
            )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "attack"
    return table


def method_label(method: str) -> str:
    return detector_title(method)


def table5(
    evaluations: pd.DataFrame, mmd: pd.DataFrame | None, keys: list[str], mmd_batch: int | None, fprs
) -> pd.DataFrame:
    """Methods x attacks, all measured here on the honest sets: AUROC and TPR at the largest calibrated FPR
    of each detector on its own key, and each detector's flag rate on the noise controls."""
    top = fpr_label(max(fprs))
    rows = {}
    controls = sorted(t for t in evaluations["test"].unique() if str(t).startswith("noise_"))
    for method in evaluations["method"].unique():
        ev = evaluations[evaluations["method"] == method]
        row = {}
        for key in keys + [POOLED]:
            sel = _select(ev, key, key, "honest")
            if sel is None:
                row[f"{key} AUROC"] = row[f"{key} TPR@{top}%"] = float("nan")
            elif not _trained(sel):
                row[f"{key} AUROC"] = row[f"{key} TPR@{top}%"] = NOT_TRAINED
            else:
                row[f"{key} AUROC"] = float(sel["auroc"])
                row[f"{key} TPR@{top}%"] = 100 * float(sel[f"tpr_at_fpr{top}"])
        for control in controls:
            sel = _select(ev, POOLED, control, "control")
            row[f"flags {control} (%)"] = (
                float("nan")
                if sel is None
                else (NOT_TRAINED if not _trained(sel) else 100 * float(sel[f"tpr_at_fpr{top}"]))
            )
        label = method_label(method)
        if method == "pca" and "fit_images" in ev.columns:
            label += f", fitted on {int(ev['fit_images'].iloc[0])} clean images"
        rows[label] = row
    if mmd is not None and mmd_batch is not None:
        sel = mmd[mmd["batch_size"] == mmd_batch]
        power = {r["test"]: r["rejection_rate"] for _, r in sel.iterrows()}
        row = {}
        for key in keys:
            row[f"{key} AUROC"] = float("nan")
            row[f"{key} TPR@{top}%"] = 100 * power.get(key, float("nan"))
        attacked = [power[k] for k in keys if k in power]
        row[f"{POOLED} AUROC"] = float("nan")
        row[f"{POOLED} TPR@{top}%"] = 100 * float(np.mean(attacked)) if attacked else float("nan")
        rows[
            f"Kernel MMD test, batches of {mmd_batch} (Grosse et al. 2017; power, clean rejection "
            f"{100 * power.get('clean', float('nan')):.0f}%)"
        ] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def _pooled_last(labels) -> list[str]:
    return sorted(labels, key=lambda k: (k == POOLED, k))


def generalisation_matrix(evaluation: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """`metric` of each detector (rows: trained on) on each attack's honest test set (columns); pooled last."""
    honest = evaluation[evaluation["set"] == "honest"]
    table = honest.pivot(index="train", columns="test", values=metric)
    table = table.loc[_pooled_last(table.index), _pooled_last(table.columns)]
    table.index.name = "trained on \\ tested on"
    return table


DEFENDED_COLUMNS = {
    "images": "images",
    "clean_accepted_and_correct": "clean: accepted and correct (%)",
    "robust_accuracy_no_detector": "no detector: robust accuracy, detector-oblivious attacks (%)",
    "defended_accuracy_oblivious": "defended, detector-oblivious attacks (%)",
    "defended_accuracy_aware": "defended, detector-aware attack (%)",
    "defended_accuracy_square": "defended, gradient-free Square (%)",
    "defended_accuracy_strongest": "defended, strongest of all (%)",
}
# the gradient-masking check's column: images the gradient-free attack broke that every gradient attack missed
SQUARE_ONLY = "broken by Square alone (images)"
OPTIONAL_DEFENDED = {"defended_accuracy_square"}  # aware.csv files from before the Square check lack it


# the best published robust accuracy (RobustBench, CIFAR-10, L-inf 8/255, AutoAttack) that the Tramer (2022)
# reduction compares a detector's claim with
BEST_PUBLISHED_ROBUST = {"epsilon": 8 / 255, "accuracy": 75.28, "source": "RobustBench, CIFAR-10 L-inf 8/255"}
TRAMER_IMPLIED = "Tramer 2022: implied robust accuracy at eps/2 (%)"
TRAMER_FLAG = "implied accuracy beats the best published (75.28 % at 8/255)"
# the aware attack's objective at its first and last step (a gradient-masking check), as text
OBJECTIVE_CURVE = "objective, first -> last step (lambda)"


def tramer_check(defended_percent: float, eps: float) -> tuple[float, str]:
    """Tramer (ICML 2022): a detector whose defended accuracy at eps is A yields a (slow) classifier robust at
    eps/2 with accuracy A. Where eps/2 is at least 8/255, an A above the best published robust accuracy there
    (RobustBench: 75.28 %) almost surely means the detector's evaluation is wrong ("yes"); below 8/255 no
    published figure bounds it ("no reference at eps/2")."""
    if eps / 2 + 1e-9 < BEST_PUBLISHED_ROBUST["epsilon"]:
        return defended_percent, "no reference at eps/2"
    return defended_percent, "yes" if defended_percent > BEST_PUBLISHED_ROBUST["accuracy"] else "no"


def _lambda_text(value) -> str:
    """The run a curve comes from: a penalty weight (a number) or 'orthogonal' (orthogonal PGD)."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def defended_table(aware: pd.DataFrame) -> pd.DataFrame:
    """The defended system's accuracy (classified correctly or rejected) per detector and eps, under the
    detector-oblivious attacks and the detector-aware one, with the gradient-masking checks."""
    required = {*DEFENDED_COLUMNS, "attack_success_aware", "sanity", "method"} - OPTIONAL_DEFENDED
    missing = sorted(required - set(aware.columns))
    if missing:
        raise PipelineFileError(
            f"detection aware.csv: no column(s) {', '.join(missing)}; a file written before these columns were "
            "named (issue 28: '_adaptive' became '_aware', '_non_adaptive' '_oblivious'): delete it and re-run "
            "its detect job"
        )
    rows = {}
    for _, r in aware[~aware["sanity"].astype(bool)].iterrows():
        row = {
            title: (int(r[col]) if col == "images" else 100 * float(r.get(col, float("nan"))))
            for col, title in DEFENDED_COLUMNS.items()
        }
        square_run = "square_only" in r.index and not math.isnan(
            float(r.get("defended_accuracy_square", math.nan))
        )
        row[SQUARE_ONLY] = int(r["square_only"]) if square_run else "not run"
        sanity = aware[(aware["method"] == r["method"]) & aware["sanity"].astype(bool)]
        row["aware attack success at unbounded eps (%)"] = (
            100 * float(sanity.iloc[0]["attack_success_aware"]) if not sanity.empty else float("nan")
        )
        row[TRAMER_IMPLIED], row[TRAMER_FLAG] = tramer_check(
            row[DEFENDED_COLUMNS["defended_accuracy_strongest"]], float(r["epsilon"])
        )
        row[OBJECTIVE_CURVE] = (
            f"{r['loss_first_step']:.3g} -> {r['loss_last_step']:.3g} ({_lambda_text(r['loss_lambda'])})"
        )
        rows[f"{method_label(r['method'])}, eps {r['epsilon']:g}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "detector"
    return table


def write_detection_tables(
    evaluations: pd.DataFrame,
    mmd: pd.DataFrame | None,
    keys: list[str],
    mmd_batch: int | None,
    out: dict,
    fprs=(0.01, 0.05),
    aware: pd.DataFrame | None = None,
) -> None:
    """Table 4, Table 5, the generalisation matrix and the defended-accuracy table from the detectors'
    evaluations (`out`: the paths table4_csv, table4_md, table5_csv, table5_md, general_csv, general_md,
    defended_csv, defended_md)."""
    latent = evaluations[evaluations["method"] == PAPER_DETECTOR]
    top = fpr_label(max(fprs))
    paper = ", ".join(f"{k} {v:.2f}" for k, v in PAPER_TABLE4.items())
    write_table(
        table4(latent, keys, fprs),
        out["table4_csv"],
        out["table4_md"],
        "Table 4: detection from the Glow latent (5-layer MLP)",
        [
            "Honest sets (first rows): the clean test images against the attacked images that the attack changed "
            "and that fooled the classifier although it classified the clean image correctly; the detector "
            "trained on the same kind of training images. '(all images)': the paper's sets, every attacked "
            "image (including those the attack left unchanged, counted in the last column).",
            "Thresholds come from the clean calibration split (held out of all training, not the test split); "
            "TPR at x% FPR uses them; 'test FPR' is the false-positive rate they realise on clean test images.",
            f"accuracy: balanced accuracy at the {top}% FPR threshold. The paper reported accuracy on balanced "
            "all-images sets at its own threshold.",
            "An attack name ending in 8bit: adversarials rounded to the 8-bit grid (what an image file holds).",
            f"Paper (accuracy %): {paper}.",
        ],
    )
    write_table(
        table5(evaluations, mmd, keys, mmd_batch if mmd is not None else None, fprs),
        out["table5_csv"],
        out["table5_md"],
        "Table 5: detection methods compared on the same images",
        [
            "Every method sees the same training, calibration and test images; honest attacked sets; the paper "
            "copied its baseline numbers from other papers and data sets.",
            f"AUROC (threshold-free) and TPR at the {top}% FPR threshold calibrated on clean held-out images, of "
            "the detector trained on that attack; 'overall': trained and tested on all attacks pooled.",
            f"flags noise_*: share of clean test images with uniform or sign noise of the same eps that the pooled "
            f"detector flags at the {top}% threshold (a detector of noise, not of attacks, flags them too).",
            "Control: the off-grid share needs no training; it shows how much the 8-bit fingerprint of float "
            "adversarials alone gives away (AUROC ~1 on float, ~0.5 on 8bit adversarials).",
            f"'{NOT_TRAINED}': the detector's final training loss stayed within 0.02 of ln 2 (chance).",
            "MMD: a test on batches, not single images: the TPR column is its power on attacked batches at the "
            "configured level; see results/detection/<dataset>/mmd/power.csv for every batch size.",
        ],
    )
    write_table(
        generalisation_matrix(latent),
        out["general_csv"],
        out["general_md"],
        "Latent detector generalisation: AUROC on honest sets, trained on rows, tested on columns",
        digits=3,
    )
    defended = (
        defended_table(aware)
        if aware is not None and not aware.empty
        else pd.DataFrame(columns=list(DEFENDED_COLUMNS.values()))
    )
    write_table(
        defended,
        out["defended_csv"],
        out["defended_md"],
        "Defended system accuracy: classified correctly or rejected, under attacks that ignore and that know "
        "the detector",
        [
            f"Detector: the pooled one, at its {top}% FPR threshold from the calibration split. An attacked test "
            "image counts as defended when the classifier gets it right or the detector rejects it.",
            "Detector-oblivious: the configured attacks (stored files) at that eps, worst case per image. "
            "Detector-aware: PGD on the classifier's margin plus lambda x the detector's calibrated excess score, several lambda "
            "(0 = ignores the detector) and restarts; strongest: an image survives only if it survives all.",
            "Gradient-masking checks: the aware attack at an unbounded eps must break ~100 %, and its objective "
            "must fall from the first to the last step.",
            "Gradient-free check: Square (Andriushchenko et al. 2020, AutoAttack's) on the whole system's margin "
            "(misclassified and not flagged), detection.aware.square_queries queries per image; it counts in the "
            f"strongest of all. '{SQUARE_ONLY}' above 0 means it broke images every gradient attack left "
            "standing: the gradients are masked somewhere (a bug until explained).",
        ],
    )
