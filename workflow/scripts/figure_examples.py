"""Rule `figure_examples`: the paper's Figure 1 (clean images and each attack's adversarials; advdefense.figures)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense import figures
from advdefense.snakemake_job import run_script


def main(smk):
    attack_files = dict(zip(smk.params.attack_names, smk.input.attacks, strict=True))  # in the order of the figure's rows
    figures.figure1_examples(smk.input.data, attack_files, smk.output[0])


run_script(snakemake, main)  # noqa: F821
