"""Rule `corrupt`: one CIFAR-10-C corruption of the test images the attacks use, at every configured severity."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.attacks import attacked_images
from advdefense.corrupted_files import write_corrupted_file
from advdefense.errors import ConfigError
from advdefense.snakemake_job import run_script


def main(smk):
    data, index = attacked_images(smk.input.data, "test", smk.params.images, smk.params.seed)
    n = smk.params.corrupted or len(index)  # the first n of them (corruptions.images)
    if n > len(index):
        raise ConfigError(f"corruptions.images: {n} is more than the {len(index)} attacked test images "
                          "(attack_defaults.images.test)")
    write_corrupted_file(smk.output[0], data.images[:n], data.labels[:n], index[:n], smk.wildcards.corruption,
                         smk.params.severities, smk.params.seed, smk.input.data)


run_script(snakemake, main)  # noqa: F821
