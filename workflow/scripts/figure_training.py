"""Rule `figure_training`: the training curves of every model trained in the run (advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    figures.training_curves(dict(smk.input.items()), smk.output[0])


run_script(snakemake, main)  # noqa: F821
