"""Rules `attack` and `attack_shard`: one attack at one epsilon on one split (or one shard of it) -> one HDF5 file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attacks import generate_attack_file
from advdefense.plan.jobs import AttackJob
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    # attack_shard: shard k (1-based in file names) of N
    shard = (int(smk.wildcards.shard) - 1, int(smk.wildcards.shards)) if "shard" in smk.wildcards.keys() else None
    job = AttackJob.from_params(smk.params.job, shard=shard)
    generate_attack_file(smk.input.data, smk.input.model, job, smk.output[0], device=runtime_setting(smk, "device"))


run_script(snakemake, main)  # noqa: F821
