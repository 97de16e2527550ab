"""Rule `table3`: paper Table 3 (purification) from the purified and adaptive test files."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.snakemake_job import run_script
from advdefense.tables import write_table3


def main(smk):
    columns = [(name, float(eps)) for name, eps in smk.params.columns]
    purified = dict(zip(columns, smk.input.purified))
    adaptive = dict(zip(columns, smk.input.adaptive)) if len(smk.input.adaptive) == len(columns) else {}
    write_table3(columns, purified, adaptive, smk.input.clean, smk.output.csv, smk.output.md)


run_script(snakemake, main)  # noqa: F821
