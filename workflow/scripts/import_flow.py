"""Rule `import_flow`: convert the published Glow checkpoint and measure its bits/dim here."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.flow import import_published_flow
from advdefense.workflow_support import run_script


def main(smk):
    import_published_flow(smk.input.checkpoint, smk.input.hparams, smk.input.data, smk.config, smk.output.model,
                          smk.output.metrics)


run_script(snakemake, main)  # noqa: F821
