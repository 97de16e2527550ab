"""Rule `import_flow`: convert the published Glow checkpoint and measure its bits/dim here."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.flow import import_published_flow
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    import_published_flow(smk.input.checkpoint, smk.input.hparams, smk.input.data, smk.config, smk.output.model,
                          smk.output.metrics)


run_script(snakemake, main)  # noqa: F821
