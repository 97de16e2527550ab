"""Rule `classifier_table`: one table of every group of a list `classifier.training` (gathered over seeds where
there are seeds) -> one table, a block of rows per training method (csv and md)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.seeds import write_side_by_side
from advdefense.snakemake_job import run_script


def main(smk):
    paths = {group: smk.input[group] for group in smk.params.methods}
    write_side_by_side(paths, smk.params.methods, smk.params.seeds, smk.output.csv, smk.output.md)


run_script(snakemake, main)  # noqa: F821
