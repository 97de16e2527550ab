"""Rule `adaptive_attack`: the configured attack run end to end through the job's purifier + classifier."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import AdaptiveSettings, PurifierSetup, adaptive_attack
from advdefense.plan.purifier_specs import PURIFIER_MODELS
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    models = {name: smk.input[name] for name in PURIFIER_MODELS if name in smk.input.keys()}
    setup = PurifierSetup(smk.wildcards.purifier, smk.params.settings, models)
    adaptive = AdaptiveSettings(images=smk.params.adaptive_images, restarts=smk.params.restarts,
                                params=smk.params.overrides, eot_samples=smk.params.eot_samples or 1)
    adaptive_attack(smk.input.data, smk.input.model, setup, smk.wildcards.attack, smk.params.attack,
                    smk.params.epsilon, smk.output[0], images=smk.params.images, seed=smk.params.seed,
                    adaptive=adaptive, device=runtime_setting(smk, "device"), batch_size=smk.params.batch_size)


run_script(snakemake, main)  # noqa: F821
