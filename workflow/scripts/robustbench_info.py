"""Rule `robustbench_info`: an AutoAttack result of the test split as a RobustBench model_info entry (JSON)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.robustbench_info import write_model_info
from advdefense.snakemake_job import run_script


def main(smk):
    write_model_info(smk.input.attack, smk.input.classifier, smk.output[0], smk.wildcards.run, smk.params.dataset,
                     smk.params.architecture, smk.input.get("corruptions"))


run_script(snakemake, main)  # noqa: F821
