"""Figures of the report: Figure 1 (examples), accuracy vs epsilon, ROC curves, score histograms,
training curves. Each function reads pipeline outputs and writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .attack_files import check_adversarials, open_attack_file, read_attack_file  # noqa: E402
from .data import class_names, read_split  # noqa: E402
from .errors import PipelineFileError  # noqa: E402
from .h5io import atomic_path  # noqa: E402
from .metrics import auroc, roc_curve  # noqa: E402
from .plan.names import POOLED, run_of  # noqa: E402
from .plan.purifier_specs import purifier_title  # noqa: E402
from .score_files import read_all_scores  # noqa: E402
from .tables import trained_flag  # noqa: E402


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def figure1_examples(dataset_path, attack_files: dict[str, str], out_path, n_images: int = 6) -> None:
    """Rows: clean image, then each attack's adversarial (same images); titles: true / predicted class.
    Images where every attack succeeded are preferred, as in the paper's Figure 1."""
    names = class_names(dataset_path)
    files = {
        k: read_attack_file(p, require=("index", "label", "pred_clean", "pred_adv", "success"))
        for k, p in attack_files.items()
    }
    first = next(iter(files.values()))
    index = first.index
    all_success = np.all([f.success for f in files.values()], axis=0)
    order = np.concatenate([np.flatnonzero(all_success), np.flatnonzero(~all_success)])[:n_images]
    # only the shown images are read: of the dataset file and of each attack file
    shown = np.sort(order)
    clean_images = dict(zip(shown, read_split(dataset_path, "test", index[shown]).images))
    shown_adv = {}
    for k, p in attack_files.items():
        with open_attack_file(p, ("adv",)) as f:
            adv = f["adv"][shown]
        check_adversarials(adv, p)
        shown_adv[k] = dict(zip(shown, adv))
    rows = 1 + len(files)
    fig, axes = plt.subplots(rows, len(order), figsize=(1.8 * len(order), 2.0 * rows), squeeze=False)
    for j, i in enumerate(order):
        label = int(first.label[i])
        clean = clean_images[i].transpose(1, 2, 0)
        axes[0, j].imshow(clean)
        axes[0, j].set_title(f"{names[label]}\npred {names[int(first.pred_clean[i])]}", fontsize=7)
        for r, (k, f) in enumerate(files.items(), start=1):
            axes[r, j].imshow(np.clip(shown_adv[k][i].transpose(1, 2, 0), 0, 1))
            axes[r, j].set_title(
                f"pred {names[int(f.pred_adv[i])]}",
                fontsize=7,
                color="red" if f.success[i] else "black",
            )
    for r, key in enumerate(["clean", *files], start=0):
        axes[r, 0].set_ylabel(key, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "Figure 1: clean test images and their adversarial versions (red: classifier fooled)", fontsize=9
    )
    _save(fig, out_path)


NORM_LABELS = {"linf": "L-inf", "l2": "L2"}


ADAPTIVE_SUFFIX = ", adaptive attack"


def defence_label(purifier: str, adaptive: bool) -> str:
    """A purified curve's label: the purifier's title (plan.purifier_specs), and whether the attack knew it."""
    return purifier_title(purifier) + (ADAPTIVE_SUFFIX if adaptive else "")


def defended_accuracy(purified_paths=(), adaptive_paths=()) -> pd.DataFrame:
    """Test accuracy with each purifier, per run, attack and epsilon: against the attack that ignores it (its
    purified test files) and against the adaptive attack through it (the adaptive files). Columns run, defence
    (`defence_label`), attack, epsilon, accuracy, images."""
    from .purified_files import read_purified

    rows = []
    for path in purified_paths:
        p = read_purified(path)
        rows.append(
            {
                "run": run_of(path),
                "defence": defence_label(str(p.attrs["purifier"]), adaptive=False),
                "attack": p.attrs["attack"],
                "epsilon": float(p.attrs["epsilon"]),
                "accuracy": float((p.pred_purified == p.label).mean()),
                "images": len(p.label),
            }
        )
    for path in adaptive_paths:
        a = read_attack_file(path, require=("label", "pred_adv"))
        rows.append(
            {
                "run": run_of(path),
                "defence": defence_label(str(a.attrs["defense"]), adaptive=True),
                "attack": a.attrs["attack"],
                "epsilon": a.epsilon,
                "accuracy": float((a.pred_adv == a.label).mean()),
                "images": len(a),
            }
        )
    return pd.DataFrame(rows, columns=["run", "defence", "attack", "epsilon", "accuracy", "images"])


def _mean_sd(table: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, sample sd (0 for one run) and number of runs of `value` per group of `by`."""
    points = (
        table.groupby(by).agg(mean=(value, "mean"), sd=(value, "std"), runs=("run", "nunique")).reset_index()
    )
    points["sd"] = points["sd"].fillna(0.0)
    return points


def accuracy_vs_epsilon(
    summary_csvs, out_path, defended: pd.DataFrame | None = None, points_csv=None
) -> pd.DataFrame:
    """Test accuracy under each attack versus its epsilon, one panel per threat model (L-inf, L2: their epsilons
    are not on one scale), clean accuracy at epsilon 0; dashed: with each purifier against the attack that
    ignores it, dotted: against the adaptive attack through it (`defended`, from `defended_accuracy`).
    `summary_csvs`: one run's summary.csv, or a list of them (one per seed): then each point is the mean over
    the runs with a bar of one standard deviation. Returns what is plotted (also written to `points_csv`):
    norm, attack, defence ('none' for the bare classifier), epsilon, mean, sd, runs."""
    paths = [summary_csvs] if isinstance(summary_csvs, (str, Path)) else list(summary_csvs)
    table = pd.concat([pd.read_csv(p).assign(run=i) for i, p in enumerate(paths)])
    table = table[table["split"] == "test"]
    bare = _mean_sd(table, ["norm", "attack", "epsilon"], "robust_accuracy").assign(defence="none")
    clean = _mean_sd(table.drop_duplicates(["run", "attack"]), ["norm", "attack"], "clean_accuracy").assign(
        defence="none", epsilon=0.0
    )
    parts = [clean, bare]
    if defended is not None and len(defended):
        norms = table.drop_duplicates("attack").set_index("attack")["norm"]
        parts.append(
            _mean_sd(defended, ["defence", "attack", "epsilon"], "accuracy").assign(
                norm=lambda d: d["attack"].map(norms)
            )
        )
    points = pd.concat(parts, ignore_index=True)
    # the bare classifier first, then each purifier in the order it came, each followed by its adaptive attack
    bases = list(dict.fromkeys(d.removesuffix(ADAPTIVE_SUFFIX) for d in points["defence"] if d != "none"))
    present = set(points["defence"])
    defences = ["none"] + [d for b in bases for d in (b, b + ADAPTIVE_SUFFIX) if d in present]
    points["order"] = points["defence"].map({d: i for i, d in enumerate(defences)})
    points = points.sort_values(["norm", "attack", "order", "epsilon"]).reset_index(drop=True)[
        ["norm", "attack", "defence", "epsilon", "mean", "sd", "runs"]
    ]
    norms = [n for n in NORM_LABELS if n in set(points["norm"])]
    # solid: no defence; dashed: a purifier against the attack that ignores it; dotted: the adaptive attack
    markers = "sDvP*Xh<>p"
    styles = {"none": ("o", "-")}
    for d in defences[1:]:
        marker = markers[bases.index(d.removesuffix(ADAPTIVE_SUFFIX)) % len(markers)]
        styles[d] = (marker, ":" if d.endswith(ADAPTIVE_SUFFIX) else "--")
    fig, axes = plt.subplots(1, max(1, len(norms)), figsize=(5.5 * max(1, len(norms)), 3.8), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        for attack, rows in points[points["norm"] == norm].groupby("attack", sort=False):
            color = None
            for defence, (marker, line) in styles.items():
                r = rows[rows["defence"] == defence]
                if not len(r):
                    continue
                label = attack if defence == "none" else f"{attack} + {defence}"
                drawn = ax.errorbar(
                    r["epsilon"],
                    100 * r["mean"],
                    yerr=100 * r["sd"],
                    marker=marker,
                    linestyle=line,
                    capsize=3,
                    color=color,
                    label=label,
                    markersize=4,
                )
                color = drawn.lines[0].get_color()
        ax.set_xlabel(f"epsilon ({NORM_LABELS[norm]}, pixels in [0, 1])")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        runs = f", mean ± sd over {len(paths)} seeds" if len(paths) > 1 else ""
        ax.set_title(f"Accuracy under {NORM_LABELS[norm]} attacks versus epsilon{runs}", fontsize=9)
    _save(fig, out_path)
    if points_csv is not None:
        with atomic_path(points_csv) as tmp:
            points.to_csv(tmp, index=False)
    return points


def auroc_by_epsilon(evaluation_csvs) -> pd.DataFrame:
    """From the detectors' evaluation.csv files (of one run, or of several: `run` is the run directory): AUROC of
    each detector trained on one attack at one epsilon and tested on the same, on the honest sets (run, method,
    attack, epsilon, auroc, trained: False where its training loss stayed at chance, see detectors.trained)."""
    rows = []
    for path in evaluation_csvs:
        ev = pd.read_csv(path)
        missing = {"test_attack", "test_epsilon", "trained"} - set(ev.columns)
        if missing:
            raise PipelineFileError(
                f"{path}: lacks the column(s) {', '.join(sorted(missing))} (written by an older "
                f"version; delete it to have it made again)"
            )
        ev = ev[(ev["set"] == "honest") & (ev["train"] == ev["test"]) & ev["test_attack"].notna()]
        rows += [
            {
                "run": run_of(path),
                "method": r.method,
                "attack": r.test_attack,
                "epsilon": float(r.test_epsilon),
                "auroc": float(r.auroc),
                "trained": trained_flag(r.trained, path),
            }
            for r in ev.itertuples()
        ]
    return (
        pd.DataFrame(rows, columns=["run", "method", "attack", "epsilon", "auroc", "trained"])
        .sort_values(["attack", "method", "epsilon", "run"])
        .reset_index(drop=True)
    )


def auroc_vs_epsilon(evaluation_csvs, out_path, points_csv=None) -> pd.DataFrame:
    """One panel per attack: each detector's AUROC (honest sets) versus the attack's epsilon, the mean over runs
    with a bar of one standard deviation when there are several (seeds); 0.5 is chance. A detector that did not
    train (loss at chance) in a run counts in no mean: as in the tables, its point is the mean over the runs where
    it trained, and a point where it trained in none is left out. Returns what is plotted (also written to
    `points_csv`): attack, method, epsilon, auroc, auroc_sd, runs (that trained), untrained_runs."""
    table = auroc_by_epsilon(evaluation_csvs)
    table["trained"] = table["trained"].astype(bool)
    untrained = (
        table[~table["trained"]]
        .groupby(["attack", "method", "epsilon"])["run"]
        .nunique()
        .rename("untrained_runs")
        .reset_index()
    )
    points = _mean_sd(table[table["trained"]], ["attack", "method", "epsilon"], "auroc").rename(
        columns={"mean": "auroc", "sd": "auroc_sd"}
    )
    points = points.merge(untrained, on=["attack", "method", "epsilon"], how="left")
    points["untrained_runs"] = points["untrained_runs"].fillna(0).astype(int)
    attacks = sorted(set(points["attack"])) or ["(none)"]
    cols = min(3, len(attacks))
    rows_n = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.4 * rows_n), squeeze=False)
    for ax, attack in zip(axes.ravel(), attacks):
        for method, rows in points[points["attack"] == attack].groupby("method"):
            ax.errorbar(
                rows["epsilon"], rows["auroc"], yerr=rows["auroc_sd"], marker="o", capsize=3, label=method
            )
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0.4, 1.01)
        ax.set_xlabel("epsilon")
        ax.set_ylabel("AUROC (honest sets)")
        ax.set_title(attack, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(attacks) :]:
        ax.axis("off")
    runs = int(points["runs"].max()) if len(points) else 1
    fig.suptitle(
        "Detection AUROC versus epsilon (each detector trained and tested on one attack and epsilon)"
        + (f"; mean ± sd over {runs} seeds" if runs > 1 else ""),
        fontsize=9,
    )
    _save(fig, out_path)
    if points_csv is not None:
        with atomic_path(points_csv) as tmp:
            points.to_csv(tmp, index=False)
    return points


def roc_curves(models_dir, out_path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for key, s in read_all_scores(models_dir).items():
        if key == POOLED or key not in s.scores:
            continue
        clean, attacked = s.of("clean"), s.of(key)
        fpr, tpr = roc_curve(clean, attacked)
        ax.plot(fpr, tpr, label=f"{key} (AUROC {auroc(clean, attacked):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (attacked flagged)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    _save(fig, out_path)


def score_histograms(models_dir, out_path, title: str) -> None:
    scores = {k: v for k, v in read_all_scores(models_dir).items() if k != POOLED}
    fig, axes = plt.subplots(1, max(1, len(scores)), figsize=(3.6 * max(1, len(scores)), 3.0), squeeze=False)
    for ax, (key, s) in zip(axes[0], scores.items()):
        clean, attacked = s.of("clean"), s.of(key)
        bins = np.histogram_bin_edges(np.concatenate([clean, attacked]), bins=40)
        ax.hist(clean, bins=bins, alpha=0.6, label="clean")
        ax.hist(attacked, bins=bins, alpha=0.6, label="attacked")
        ax.axvline(s.largest_fpr_threshold, color="black", linestyle="--", linewidth=1)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("detector score (logit)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, out_path)


def training_curves(logs: dict[str, str], out_path) -> None:
    """One panel per trained model: its training loss and its test metric per epoch."""
    panels = [(name, pd.read_csv(path)) for name, path in logs.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (name, log) in zip(axes[0], panels):
        train = next(c for c in ("train_loss", "train_bpd", "train_mse") if c in log.columns)
        ax.plot(log["epoch"], log[train], color="tab:blue")
        ax.set_ylabel(train, color="tab:blue", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=9)
        test = next((c for c in ("test_accuracy", "test_bpd", "test_psnr") if c in log.columns), None)
        if test:
            twin = ax.twinx()
            twin.plot(log["epoch"], log[test], linestyle="--", color="tab:red")
            twin.set_ylabel(test, color="tab:red", fontsize=8)
    fig.tight_layout()
    _save(fig, out_path)
