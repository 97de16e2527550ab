"""Rule `detection_tables`: Tables 4 and 5, the generalisation matrix and the defended-accuracy table."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

import pandas as pd

from advdefense.snakemake_job import run_script
from advdefense.tables import write_detection_tables


def main(smk):
    evaluations = pd.concat([pd.read_csv(p) for p in smk.input.evaluations], ignore_index=True)
    mmd = pd.read_csv(smk.input.mmd[0]) if smk.input.mmd else None
    aware = pd.concat([pd.read_csv(p) for p in smk.input.aware], ignore_index=True) if smk.input.aware else None
    write_detection_tables(evaluations, mmd, [key for _, _, key in smk.params.attack_keys], smk.params.mmd_batch,
                           dict(smk.output.items()), smk.params.fprs, aware)


run_script(snakemake, main)  # noqa: F821
