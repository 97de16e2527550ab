"""Rule `detect`: fit one detector per attack key and one pooled, calibrate, evaluate (honest and all-images
sets, noise controls), and run the detector-aware attack on the pooled detector."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.detection import run_detection_stage
from advdefense.plan.jobs import DetectionJob
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    run_detection_stage(
        DetectionJob.from_params(smk.params.job), dict(smk.input.items()), smk.output.evaluation, smk.output.aware,
        smk.output.models, device=runtime_setting(smk, "device"), batch_size=runtime_setting(smk, "latents.batch_size"))


run_script(snakemake, main)  # noqa: F821
