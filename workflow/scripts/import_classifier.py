"""Rule `import_classifier`: bring your own classifier (TorchScript, or builder + state dict), pinned by sha256."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.classifier import import_classifier
from advdefense.plan.jobs import CheckpointSource
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    import_classifier(CheckpointSource.from_settings(smk.input.checkpoint, smk.params.checkpoint), smk.input.data,
                      smk.output.model, smk.output.metrics, device=runtime_setting(smk, "device"),
                      eval_batch_size=runtime_setting(smk, "classifier.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
