"""Rule `import_flow`: convert the published Glow checkpoint and report its bits/dim here."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import import_published_flow
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    import_published_flow(smk.input.checkpoint, smk.input.hparams, smk.input.data, smk.output.model,
                          smk.output.metrics, device=runtime_setting(smk, "device"),
                          eval_batch_size=runtime_setting(smk, "flow.eval_batch_size"))


run_script(snakemake, main)  # noqa: F821
