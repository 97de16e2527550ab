"""Rules `figure_accuracy_eps` (one run) and `seed_figure_accuracy` (every seed's: mean and sd): accuracy against
epsilon, undefended and defended (advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    defended = figures.defended_accuracy(smk.input.purified, smk.input.adaptive)
    figures.accuracy_vs_epsilon(smk.input.summaries, smk.output.png, defended, points_csv=smk.output.csv)


run_script(snakemake, main)  # noqa: F821
