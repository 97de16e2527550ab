"""Rule `adaptive_attack`: the configured attack, end to end through autoencoder + classifier."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.purification import adaptive_attack
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    adaptive_attack(smk.input.data, smk.input.model, smk.input.autoencoder, smk.config, smk.wildcards.attack,
                    smk.params.epsilon, smk.output[0])


run_script(snakemake, main)  # noqa: F821
