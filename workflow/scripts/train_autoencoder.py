"""Rule `train_autoencoder`: train the purifier on clean training images."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.purification import train_autoencoder
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    train_autoencoder(smk.input.data, smk.config, smk.output.model, smk.output.metrics, smk.output.epochs,
                      smk.params.state)


run_script(snakemake, main)  # noqa: F821
