"""Rule `reproduction_page`: a group's runs -> every paper number beside ours (csv, and the page in markdown)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.reproduction import reproduction_page
from advdefense.snakemake_job import run_script


def main(smk):
    files = {key: list(smk.input[key]) for key in smk.input.keys()}
    reproduction_page(files, smk.params.epsilon, smk.params.data, smk.params.title, smk.output.csv, smk.output.md)


run_script(snakemake, main)  # noqa: F821
