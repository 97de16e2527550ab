"""Rules `purify_attack` / `purify_clean`: images through the autoencoder, then the classifier."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.purification import purify_attack_file, purify_clean
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    if smk.rule == "purify_clean":
        purify_clean(smk.input.data, smk.input.autoencoder, smk.input.model, smk.config, smk.wildcards.split,
                     smk.output[0])
    else:
        purify_attack_file(smk.input.attack, smk.input.autoencoder, smk.input.model, smk.config, smk.output[0])


run_script(snakemake, main)  # noqa: F821
