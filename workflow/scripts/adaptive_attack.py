"""Rule `adaptive_attack`: the configured attack, end to end through autoencoder + classifier."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import adaptive_attack
from advdefense.workflow_support import run_script


def main(smk):
    adaptive_attack(smk.input.data, smk.input.model, smk.input.autoencoder, smk.config, smk.wildcards.attack,
                    smk.params.epsilon, smk.output[0])


run_script(snakemake, main)  # noqa: F821
