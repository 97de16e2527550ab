"""Rule `import_robustbench`: a RobustBench zoo model, loaded by the package, pinned by its checkpoint's sha256."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.classifier import import_robustbench_classifier
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    import_robustbench_classifier(smk.params.robustbench, smk.params.dataset, smk.input.data, smk.output.model,
                                  smk.output.metrics, device=runtime_setting(smk, "device"),
                                  eval_batch_size=runtime_setting(smk, "classifier.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
