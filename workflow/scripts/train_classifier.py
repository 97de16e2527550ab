"""Rule `train_classifier`: train the ResNet (resuming from its state file) and report accuracy."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.classifier import train_classifier
from advdefense.workflow_support import run_script


def main(smk):
    train_classifier(smk.input.data, smk.config, smk.output.model, smk.output.metrics, smk.output.epochs,
                     smk.params.state)


run_script(snakemake, main)  # noqa: F821
