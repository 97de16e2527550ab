"""Rule `train_flow`: train the configured Glow (resuming from its state file)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.flow import train_flow
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    train_flow(smk.input.data, smk.config, smk.output.model, smk.output.metrics, smk.output.epochs, smk.params.state)


run_script(snakemake, main)  # noqa: F821
