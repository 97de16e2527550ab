"""Rule `dataset`: build the configured dataset and write results/data/<name>.h5."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.data import build_dataset, write_dataset_h5
from advdefense.workflow_support import run_script


def main(smk):
    ds = build_dataset(smk.params.dataset, smk.params.seed)
    write_dataset_h5(ds, smk.output[0])


run_script(snakemake, main)  # noqa: F821 (injected by Snakemake)
