"""Rule `train_flow`: train the Glow (resumable per epoch)."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import train_flow
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    train_flow(smk.input.data, smk.params.flow, smk.params.seed, smk.output.model, smk.output.metrics,
               smk.output.epochs, smk.params.state, device=runtime_setting(smk, "device"),
               eval_batch_size=runtime_setting(smk, "flow.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
