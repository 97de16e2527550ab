"""Rule `merge_attack_shards`: the shards of one attack job -> its attack file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attack_files import merge_attack_shards
from advdefense.snakemake_job import run_script


def main(smk):
    merge_attack_shards(list(smk.input.shards), smk.output[0], data=smk.input.data)


run_script(snakemake, main)  # noqa: F821
