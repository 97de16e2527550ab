"""Rule `train_classifier`: train the ResNet classifier (resumable per epoch)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.classifier import train_classifier
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    train_classifier(smk.input.data, smk.params.classifier, smk.params.seed, smk.output.model, smk.output.metrics,
                     smk.output.epochs, smk.params.state, device=runtime_setting(smk, "device"),
                     eval_batch_size=runtime_setting(smk, "classifier.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
