"""Rule `corruption_tables`: the classifier, the purifiers and the detectors' false alarms on the corruptions."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.corruption_evaluation import write_corruption_tables
from advdefense.snakemake_job import run_script


def main(smk):
    evaluations = {k[len("evaluation__"):]: v for k, v in smk.input.items() if k.startswith("evaluation__")}
    write_corruption_tables(smk.input.accuracy, evaluations, smk.params.corruptions, smk.params.severities,
                            dict(smk.output.items()))


run_script(snakemake, main)  # noqa: F821
