"""Rule `adaptive_attack`: the configured attack run end to end through the job's purifier + classifier."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import AdaptiveSettings, PurifierSetup, adaptive_attack
from advdefense.plan.jobs import AttackJob
from advdefense.plan.purifier_specs import PURIFIER_MODELS
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    models = {name: smk.input[name] for name in PURIFIER_MODELS if name in smk.input.keys()}
    setup = PurifierSetup(smk.wildcards.purifier, smk.params.settings, models)
    adaptive = AdaptiveSettings(images=smk.params.adaptive_images, restarts=smk.params.restarts,
                                params=smk.params.overrides, eot_samples=smk.params.eot_samples or 1)
    adaptive_attack(smk.input.data, smk.input.model, setup, AttackJob.from_params(smk.params.job), smk.output[0],
                    adaptive=adaptive, device=runtime_setting(smk, "device"))


run_script(snakemake, main)  # noqa: F821
