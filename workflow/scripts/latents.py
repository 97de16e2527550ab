"""Rules `latents_clean` / `latents_attack`: top Glow latents and bits/dim of images."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 (the checkout's package)
import torch

from advdefense.flow import attack_latents, clean_latents
from advdefense.workflow_support import run_script


def main(smk):
    torch.set_num_threads(smk.threads)
    if smk.rule == "latents_clean":
        clean_latents(smk.input.data, smk.input.flow, smk.config, smk.wildcards.split, smk.output[0])
    else:
        attack_latents(smk.input.attack, smk.input.flow, smk.config, smk.output[0])


run_script(snakemake, main)  # noqa: F821
