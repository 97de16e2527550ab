"""Rule `attack`: one Foolbox attack at one epsilon on one split -> one HDF5 file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attacks import generate_attack_file
from advdefense.workflow_support import run_script


def main(smk):
    generate_attack_file(smk.input.data, smk.input.model, smk.config, smk.wildcards.attack, smk.params.epsilon,
                         smk.wildcards.split, smk.output[0])


run_script(snakemake, main)  # noqa: F821
