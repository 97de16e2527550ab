"""Rule `import_autoencoder_point`: a sweep point's brought autoencoder, checked, measured here and stored."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import import_autoencoder
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    import_autoencoder(smk.input.checkpoint, smk.params.sha256, smk.input.data, smk.output.model, smk.output.metrics,
                       device=runtime_setting(smk, "device"),
                       eval_batch_size=runtime_setting(smk, "autoencoder.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
