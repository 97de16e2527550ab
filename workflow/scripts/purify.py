"""Rules `purify_attack` / `purify_clean`: images through the autoencoder, then the classifier."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import purify_attack_file, purify_clean
from advdefense.workflow_support import run_script


def main(smk):
    if smk.rule == "purify_clean":
        purify_clean(smk.input.data, smk.input.autoencoder, smk.input.model, smk.config, smk.wildcards.split,
                     smk.output[0])
    else:
        purify_attack_file(smk.input.attack, smk.input.autoencoder, smk.input.model, smk.config, smk.output[0])


run_script(snakemake, main)  # noqa: F821
