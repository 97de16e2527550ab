"""Rule `dataset`: build the configured data set and write it as one HDF5 file."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.data import build_dataset, write_dataset_h5
from advdefense.snakemake_job import run_script


def main(smk):
    write_dataset_h5(build_dataset(smk.params.dataset, smk.params.seed), smk.output[0])


run_script(snakemake, main)  # noqa: F821 (injected by Snakemake)
