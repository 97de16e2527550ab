"""Rule `corrupt`: one CIFAR-10-C corruption of the test images the attacks use, at every configured severity."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.data import attacked_images
from advdefense.corrupted_files import write_corrupted_file
from advdefense.snakemake_job import run_script


def main(smk):
    data, index = attacked_images(smk.input.data, "test", smk.params.images, smk.params.seed)
    n = min(smk.params.corrupted or len(index), len(index))  # the first n of them at most (corruptions.images)
    write_corrupted_file(smk.output[0], data.images[:n], data.labels[:n], index[:n], smk.wildcards.corruption,
                         smk.params.severities, smk.params.seed, smk.input.data)


run_script(snakemake, main)  # noqa: F821
