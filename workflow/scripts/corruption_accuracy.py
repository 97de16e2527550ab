"""Rule `corruption_accuracy`: the classifier alone and through each purifier on every corrupted-images file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.corruption_evaluation import corruption_accuracy
from advdefense.plan.purifier_specs import PURIFIER_MODELS
from advdefense.purification import PurifierSetup
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    models = {name: smk.input[name] for name in PURIFIER_MODELS if name in smk.input.keys()}
    setups = [PurifierSetup(name, settings, models) for name, settings in smk.params.purifiers.items()]
    corrupted = {k[len("corrupted__"):]: v for k, v in smk.input.items() if k.startswith("corrupted__")}
    corruption_accuracy(smk.input.data, smk.input.model, corrupted, setups, smk.output[0],
                        device=runtime_setting(smk, "device"), batch_size=runtime_setting(smk, "corruptions.batch_size"))


run_script(snakemake, main)  # noqa: F821
