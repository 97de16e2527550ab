"""Rules `attack` and `attack_shard`: one attack at one epsilon on one split (or one shard of it) -> one HDF5 file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attacks import generate_attack_file
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    # attack_shard: shard k (1-based in file names) of N
    shard = (int(smk.wildcards.shard) - 1, int(smk.wildcards.shards)) if "shard" in smk.wildcards.keys() else None
    generate_attack_file(smk.input.data, smk.input.model, smk.wildcards.attack, smk.params.attack, smk.params.epsilon,
                         smk.wildcards.split, smk.output[0], images=smk.params.images, seed=smk.params.seed,
                         device=runtime_setting(smk, "device"),
                         batch_size=smk.params.batch_size, shard=shard)


run_script(snakemake, main)  # noqa: F821
