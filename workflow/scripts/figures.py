"""Rules `figure_*`: the report's figures (see advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)
from pathlib import Path

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    if smk.rule == "figure_examples":
        keys = [Path(p).parts[-3] for p in smk.input.attacks]
        figures.figure1_examples(smk.input.data, dict(zip(keys, smk.input.attacks)), smk.output[0])
    elif smk.rule in ("figure_accuracy_eps", "seed_figure_accuracy"):  # one run, or every seed's: mean and sd
        defended = figures.defended_accuracy(smk.input.purified, smk.input.adaptive)
        figures.accuracy_vs_epsilon(smk.input.summaries, smk.output.png, defended, points_csv=smk.output.csv)
    elif smk.rule in ("figure_auroc_eps", "seed_figure_auroc"):
        figures.auroc_vs_epsilon(list(smk.input.evaluations), smk.output.png, points_csv=smk.output.csv)
    elif smk.rule == "figure_detection":
        figures.roc_curves(smk.input.models, smk.output.roc, "Latent detector: ROC per attack (test split)")
        figures.score_histograms(smk.input.models, smk.output.histograms, "Latent detector scores (test split)")
    else:
        figures.training_curves(dict(smk.input.items()), smk.output[0])


run_script(snakemake, main)  # noqa: F821
