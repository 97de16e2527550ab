"""Rules `figure_auroc_eps` (one run) and `seed_figure_auroc` (every seed's): each detector's AUROC against
epsilon (advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    figures.auroc_vs_epsilon(list(smk.input.evaluations), smk.output.png, points_csv=smk.output.csv)


run_script(snakemake, main)  # noqa: F821
