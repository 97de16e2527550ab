"""Rule `seed_table`: one table of every run of `seeds` -> mean and sd over seeds (csv and md)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.seeds import write_seed_table
from advdefense.snakemake_job import run_script


def main(smk):
    write_seed_table(list(smk.input), smk.params.seeds, smk.output.csv, smk.output.md)


run_script(snakemake, main)  # noqa: F821
