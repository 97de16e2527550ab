"""Rule `autoencoder_sweep`: one row per autoencoder of the sweep (recovery, clean accuracy, PSNR, adaptive
accuracy), recovery by perturbation size, and the recovery-against-clean-accuracy figure."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.snakemake_job import run_script
from advdefense.sweep import write_autoencoder_sweep


def main(smk):
    points = dict(smk.params.points)
    columns = [(name, float(eps)) for name, eps in smk.params.columns]
    adaptive = None if smk.params.adaptive is None else (smk.params.adaptive[0], float(smk.params.adaptive[1]))
    attacks = dict(zip(columns, smk.input.attacks))
    files = {}
    for i, point in enumerate(points):  # the input functions' order: points, then columns within a point
        purified = smk.input.purified[i * len(columns):(i + 1) * len(columns)]
        files[point] = {
            "metrics": smk.input.metrics[i],
            "clean": smk.input.clean[i],
            "purified": {key: (p, attacks[key]) for key, p in zip(columns, purified)},
            "adaptive": smk.input.adaptive[i] if adaptive is not None else None,
        }
    write_autoencoder_sweep(points, columns, files, adaptive, smk.output.csv, smk.output.by_size,
                            smk.output.figure)


run_script(snakemake, main)  # noqa: F821
