"""Rule `mmd_test`: kernel MMD two-sample test on batches of clean / attacked test images."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

import numpy as np

from advdefense.data import DatasetFile
from advdefense.detection import load_pixel_inputs, mmd_power
from advdefense.h5io import atomic_path
from advdefense.snakemake_job import run_script


def main(smk):
    settings = smk.params.settings
    keys = [key for _, _, key in smk.params.attack_keys]
    data = DatasetFile(smk.input.data)  # the test and calibration splits only
    test = load_pixel_inputs(data, "test", {k: smk.input[f"{k}__test"] for k in keys})
    # reference: the clean calibration split (held out of training); attacked: the honest sets
    reference = data.split("calibration").images.astype(np.float32) / 255.0
    attacked = {k: s.attacked[s.honest] for k, s in test.attacks.items()}
    table = mmd_power(reference, test.clean, attacked, settings["batch_sizes"], settings["trials"],
                      settings["permutations"], settings["alpha"], smk.params.seed)
    with atomic_path(smk.output[0]) as tmp:
        table.to_csv(tmp, index=False)


run_script(snakemake, main)  # noqa: F821
