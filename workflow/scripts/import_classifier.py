"""Rule `import_classifier`: bring your own classifier (TorchScript, or builder + state dict), pinned by sha256."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.classifier import import_classifier
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    settings = smk.params.checkpoint
    import_classifier(smk.input.checkpoint, smk.input.data, smk.output.model, smk.output.metrics,
                      sha256=settings["sha256"], builder=settings["builder"], mean=settings["mean"], std=settings["std"],
                      device=runtime_setting(smk, "device"),
                      eval_batch_size=runtime_setting(smk, "classifier.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
