"""Rule `attack`: one Foolbox attack at one epsilon on one split -> one HDF5 file."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.attacks import generate_attack_file
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    generate_attack_file(smk.input.data, smk.input.model, smk.config, smk.wildcards.attack, smk.params.epsilon,
                         smk.wildcards.split, smk.output[0])


run_script(snakemake, main)  # noqa: F821
