"""Rules `figure_*`: the report's figures (see advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)
from pathlib import Path

import pandas as pd

from advdefense import figures
from advdefense.purification import read_purified
from advdefense.snakemake_job import run_script


def main(smk):
    if smk.rule == "figure_examples":
        keys = [Path(p).parts[-3] for p in smk.input.attacks]
        figures.figure1_examples(smk.input.data, dict(zip(keys, smk.input.attacks)), smk.output[0])
    elif smk.rule == "figure_accuracy_eps":
        rows = []
        for path in smk.input.purified:
            p = read_purified(path)
            rows.append({"attack": p["attrs"]["attack"], "epsilon": float(p["attrs"]["epsilon"]),
                         "accuracy_after": float((p["pred_purified"] == p["label"]).mean())})
        figures.accuracy_vs_epsilon(smk.input.summary, smk.output[0], pd.DataFrame(rows) if rows else None)
    elif smk.rule == "figure_auroc_eps":
        figures.auroc_vs_epsilon(list(smk.input), smk.output[0])
    elif smk.rule == "seed_figure_accuracy":  # every seed's run, mean and sd
        figures.accuracy_vs_epsilon(list(smk.input.summaries), smk.output[0])
    elif smk.rule == "seed_figure_auroc":
        figures.auroc_vs_epsilon(list(smk.input.evaluations), smk.output[0])
    elif smk.rule == "figure_detection":
        figures.roc_curves(smk.input.models, smk.output.roc, "Latent detector: ROC per attack (test split)")
        figures.score_histograms(smk.input.models, smk.output.histograms, "Latent detector scores (test split)")
    else:
        figures.training_curves(dict(smk.input.items()), smk.output[0])


run_script(snakemake, main)  # noqa: F821
