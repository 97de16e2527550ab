"""Rule `detect`: train one detector per (attack, eps) and one pooled; evaluate each on every key."""
import _checkout  # noqa: F401 (first: this checkout's src/ on sys.path)

from advdefense.config import resolve_device
from advdefense.detection import load_latent_sets, load_pixel_sets, run_detection_method
from advdefense.h5io import atomic_path
from advdefense.purification import load_autoencoder
from advdefense.workflow_support import run_script


def main(smk):
    method = smk.wildcards.method
    keys = [key for _, _, key in smk.params.attack_keys]
    sets = {}
    for split in ("train", "test"):
        files = {key: smk.input[f"{key}__{split}"] for key in keys}
        if method == "latent_mlp":
            sets[split] = load_latent_sets(smk.input[f"clean__{split}"], files)
        else:
            sets[split] = load_pixel_sets(smk.input.data, split, files)
    autoencoder = None
    if method == "magnet":
        autoencoder = load_autoencoder(smk.input.autoencoder, smk.config, resolve_device(smk.config["device"]))
    table = run_detection_method(method, smk.config, sets["train"], sets["test"], smk.output.models, autoencoder)
    with atomic_path(smk.output.evaluation) as tmp:
        table.to_csv(tmp, index=False)


run_script(snakemake, main)  # noqa: F821
