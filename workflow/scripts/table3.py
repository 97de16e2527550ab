"""Rule `table3`: paper Table 3 (purification) from each purifier's purified, adaptive and clean test files."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.snakemake_job import run_script
from advdefense.tables import write_table3


def main(smk):
    purifiers = list(smk.params.purifiers)
    columns = [(name, float(eps)) for name, eps in smk.params.columns]
    keys = [(p, *column) for p in purifiers for column in columns]  # the input functions' order
    purified = dict(zip(keys, smk.input.purified))
    adaptive = dict(zip(keys, smk.input.adaptive)) if len(smk.input.adaptive) == len(keys) else {}
    clean = dict(zip(purifiers, smk.input.clean))
    write_table3(purifiers, columns, purified, adaptive, clean, smk.output.csv, smk.output.md,
                 gradient_free=frozenset(smk.params.gradient_free))


run_script(snakemake, main)  # noqa: F821
