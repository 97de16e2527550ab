"""Rule `train_autoencoder`: train the purifying autoencoder on clean images (resumable per epoch)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.purification import train_autoencoder
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    train_autoencoder(smk.input.data, smk.params.autoencoder, smk.params.seed, smk.output.model, smk.output.metrics,
                      smk.output.epochs, smk.params.state, device=runtime_setting(smk, "device"),
                      eval_batch_size=runtime_setting(smk, "autoencoder.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
