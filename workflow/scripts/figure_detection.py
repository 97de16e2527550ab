"""Rule `figure_detection`: the paper detector's ROC curves and score histograms, from its score files
(advdefense.score_files, advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    figures.roc_curves(smk.input.models, smk.output.roc, "Latent detector: ROC per attack (test split)")
    figures.score_histograms(smk.input.models, smk.output.histograms, "Latent detector scores (test split)")


run_script(snakemake, main)  # noqa: F821
