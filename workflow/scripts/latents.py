"""Rules `latents_clean` / `latents_attack`: top Glow latents and bits/dim of images."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import attack_latents, clean_latents
from advdefense.workflow_support import run_script


def main(smk):
    if smk.rule == "latents_clean":
        clean_latents(smk.input.data, smk.input.flow, smk.config, smk.wildcards.split, smk.output[0])
    else:
        attack_latents(smk.input.attack, smk.input.flow, smk.config, smk.output[0])


run_script(snakemake, main)  # noqa: F821
