"""Rule `adaptive_attack`: the configured attack run end to end through autoencoder + classifier."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import adaptive_attack
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    adaptive_attack(smk.input.data, smk.input.model, smk.input.autoencoder, smk.wildcards.attack, smk.params.attack,
                    smk.params.epsilon, smk.output[0], images=smk.params.images,
                    adaptive_images=smk.params.adaptive_images, seed=smk.params.seed,
                    device=runtime_setting(smk, "device"), batch_size=smk.params.batch_size,
                    restarts=smk.params.restarts, params=smk.params.overrides)


run_script(snakemake, main)  # noqa: F821
