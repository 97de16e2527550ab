"""Rules `latents_clean` and `latents_attack`: Glow top latents and bits/dim of clean or attacked images."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import attack_latents, clean_latents
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    runtime = {"device": runtime_setting(smk, "device"), "batch_size": runtime_setting(smk, "latents.batch_size")}
    if smk.rule == "latents_clean":
        clean_latents(smk.input.data, smk.input.flow, smk.wildcards.split, smk.output[0], images=smk.params.images,
                      seed=smk.params.seed, **runtime)
    else:
        attack_latents(smk.input.attack, smk.input.flow, smk.output[0], data=smk.input.data, **runtime)


run_script(snakemake, main)  # noqa: F821
