"""Rule `attack_summary`: one row per (attack, epsilon, split) -> summary.csv."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attack_files import summarize_attack_files
from advdefense.h5io import atomic_path
from advdefense.snakemake_job import run_script


def main(smk):
    table = summarize_attack_files(smk.input.files, data=smk.input.data)
    with atomic_path(smk.output[0]) as tmp:
        table.to_csv(tmp, index=False)


run_script(snakemake, main)  # noqa: F821
