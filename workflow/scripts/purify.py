"""Rules `purify_attack` and `purify_clean`: images through the job's purifier, and the classifier on the result."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import PurifierSetup, purify_attack_file, purify_clean
from advdefense.plan.purifier_specs import PURIFIER_MODELS
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    runtime = {"device": runtime_setting(smk, "device"), "batch_size": runtime_setting(smk, "purification.batch_size")}
    models = {name: smk.input[name] for name in PURIFIER_MODELS if name in smk.input.keys()}
    setup = PurifierSetup(smk.wildcards.purifier, smk.params.settings, models)
    if smk.rule == "purify_clean":
        purify_clean(smk.input.data, setup, smk.input.model, smk.wildcards.split, smk.output[0],
                     images=smk.params.images, seed=smk.params.seed, **runtime)
    else:
        purify_attack_file(smk.input.attack, setup, smk.input.model, smk.output[0], data=smk.input.data, **runtime)


run_script(snakemake, main)  # noqa: F821
