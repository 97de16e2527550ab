"""Rule `train_autoencoder`: train the purifier on clean training images."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import train_autoencoder
from advdefense.workflow_support import run_script


def main(smk):
    train_autoencoder(smk.input.data, smk.config, smk.output.model, smk.output.metrics, smk.output.epochs,
                      smk.params.state)


run_script(snakemake, main)  # noqa: F821
