"""Rule `detect`: train one detector per (attack, eps) and one pooled; evaluate each on every key."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.detection import load_latent_sets, load_pixel_sets, run_detection_method
from advdefense.h5io import atomic_path
from advdefense.purification import load_autoencoder
from advdefense.snakemake_job import run_script, runtime_setting


def main(smk):
    method, device = smk.wildcards.method, runtime_setting(smk, "device")
    keys = [key for _, _, key in smk.params.attack_keys]
    sets = {}
    for split in ("train", "test"):
        files = {key: smk.input[f"{key}__{split}"] for key in keys}
        if method == "latent_mlp":
            sets[split] = load_latent_sets(smk.input[f"clean__{split}"], files)
        else:
            sets[split] = load_pixel_sets(smk.input.data, split, files)
    autoencoder = load_autoencoder(smk.input.autoencoder) if method == "magnet" else None
    table = run_detection_method(method, smk.params.settings, smk.params.seed, sets["train"], sets["test"],
                                 smk.output.models, autoencoder, device=device)
    with atomic_path(smk.output.evaluation) as tmp:
        table.to_csv(tmp, index=False)


run_script(snakemake, main)  # noqa: F821
