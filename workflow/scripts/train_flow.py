"""Rule `train_flow`: train the configured Glow (resuming from its state file)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import train_flow
from advdefense.workflow_support import run_script


def main(smk):
    train_flow(smk.input.data, smk.config, smk.output.model, smk.output.metrics, smk.output.epochs, smk.params.state)


run_script(snakemake, main)  # noqa: F821
