"""Names: every tag, label and file pattern of the pipeline, defined once.

Torch-free (standard library only): the Snakefile, the config checker, the estimate, the tables and the figures
read these names without loading a model library.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import ConfigError
from .training_specs import STANDARD, training_methods

# ----------------------------------------------------------------------------- tags
POOLED = "overall"  # the detector trained on all attacks pooled, and the pooled test set; also its table row
CLEAN = "clean"  # the unattacked images (reserved: no attack may be named so)


def eps_tag(eps: float) -> str:
    """Canonical text of an epsilon used in file names: 0.02 -> '0.02', 8/255 -> '0.03137255'."""
    text = f"{float(eps):.7g}"
    if "e" in text:
        text = f"{float(eps):.10f}".rstrip("0").rstrip(".")
    return text


def attack_key(attack: str, eps: float) -> str:
    """The name of one (attack, epsilon) in detection files and tables: 'pgd_eps0.02'."""
    return f"{attack}_eps{eps_tag(eps)}"


NOISE_CONTROLS = ("uniform", "sign")  # the random-noise controls of the detection files (detection.controls)
NOISE_CONTROL_NAMES = tuple(f"noise_{kind}" for kind in NOISE_CONTROLS)  # no attack may take these names


def control_key(kind: str, eps: float) -> str:
    """The name of a random-noise control at `eps` in detection files: 'noise_sign_eps0.02'."""
    return f"noise_{kind}_eps{eps_tag(eps)}"


def corruption_key(corruption: str, severity: int) -> str:
    """The name of one corruption at one severity in detection files: 'corrupt_fog_s3'."""
    return f"corrupt_{corruption}_s{int(severity)}"


def fpr_label(fpr: float) -> str:
    """A false-positive rate as the percentage in column names: 0.05 -> '5'."""
    return f"{100 * fpr:g}"


# ----------------------------------------------------------------------------- runs
SEED_RUN = re.compile(r".*-seed[0-9]+")


def seed_run(name: str, seed: int) -> str:
    """The run of `seeds` with seed `seed`: its own dataset split, models, attacks and detectors."""
    return f"{name}-seed{seed}"


def run_groups(cfg: dict) -> dict[str, str]:
    """{group name: training method}: the runs of one group share a classifier training method and differ in
    their seed (`seeds` gathers each group). One group `dataset.name` where the classifier is trained one way
    (or brought); else one group `<dataset.name>-<method>` per method of `classifier.training`."""
    name = cfg["dataset"]["name"]
    classifier = {
        "source": "train",
        "training": STANDARD,
        **(cfg.get("classifier") or {}),
    }  # (defaults: standard)
    methods = training_methods(classifier) if classifier["source"] == "train" else [STANDARD]
    if len(methods) == 1:
        return {name: methods[0]}
    return {f"{name}-{method}": method for method in methods}


def run_plan(cfg: dict) -> dict[str, tuple[str, int, str]]:
    """{run name: (group, seed, training method)}: one run `<group>-seed<s>` per entry of `seeds` in each group
    (see `run_groups`), or one run `<group>` with `seed`. A run name is the `{run}` part of every results
    path; each run has its own dataset split, models, attacks and detectors."""
    seeds = cfg.get("seeds")
    return {
        (group if seeds is None else seed_run(group, seed)): (group, seed, method)
        for group, method in run_groups(cfg).items()
        for seed in ([cfg["seed"]] if seeds is None else seeds)
    }


def runs(cfg: dict) -> dict[str, int]:
    """{run name: seed} (see `run_plan`)."""
    return {run: seed for run, (_, seed, _) in run_plan(cfg).items()}


# ----------------------------------------------------------------------------- file patterns
# results/<stage>/<run>/...; `{run}` is a run name (see `runs`), `{eps}` an `eps_tag`.
DATA = "results/data/{run}.h5"
CLASSIFIER = "results/classifier/{run}/model.pt"
CLASSIFIER_METRICS = "results/classifier/{run}/metrics.json"
CLASSIFIER_EPOCHS = "results/classifier/{run}/epochs.csv"
CLASSIFIER_STATE = "results/classifier/{run}/train_state.pt"
ATTACK = "results/attacks/{run}/{attack}/eps{eps}/{split}.h5"
ATTACK_SHARD = "results/attacks/{run}/{attack}/eps{eps}/shards/{split}.{shard}-of-{shards}.h5"
ATTACK_SUMMARY = "results/attacks/{run}/summary.csv"
FLOW = "results/flow/{run}/model.pt"
FLOW_METRICS = "results/flow/{run}/metrics.json"
FLOW_EPOCHS = "results/flow/{run}/epochs.csv"
FLOW_STATE = "results/flow/{run}/train_state.pt"
LATENTS_CLEAN = "results/latents/{run}/clean/{split}.h5"
LATENTS_ATTACK = "results/latents/{run}/{attack}/eps{eps}/{split}.h5"
AUTOENCODER = "results/autoencoder/{run}/model.pt"
AUTOENCODER_METRICS = "results/autoencoder/{run}/metrics.json"
AUTOENCODER_EPOCHS = "results/autoencoder/{run}/epochs.csv"
AUTOENCODER_STATE = "results/autoencoder/{run}/train_state.pt"
# one autoencoder per point of `purification.autoencoder_sweep` ({point}: its name; its purifier `autoencoder.<point>`)
AUTOENCODER_POINT = "results/autoencoder/{run}/sweep/{point}/model.pt"
AUTOENCODER_POINT_METRICS = "results/autoencoder/{run}/sweep/{point}/metrics.json"
AUTOENCODER_POINT_EPOCHS = "results/autoencoder/{run}/sweep/{point}/epochs.csv"
AUTOENCODER_POINT_STATE = "results/autoencoder/{run}/sweep/{point}/train_state.pt"
# {purifier}: a purifier of `purification.methods` (plan.purifier_specs)
PURIFIED_CLEAN = "results/purified/{run}/{purifier}/clean/{split}.h5"
PURIFIED_ATTACK = "results/purified/{run}/{purifier}/{attack}/eps{eps}/{split}.h5"
ADAPTIVE = "results/adaptive/{run}/{purifier}/{attack}/eps{eps}/test.h5"
DETECTION_EVALUATION = "results/detection/{run}/{method}/evaluation.csv"
DETECTION_MODELS = "results/detection/{run}/{method}/models"
DETECTION_AWARE = "results/detection/{run}/{method}/aware.csv"
MMD_POWER = "results/detection/{run}/mmd/power.csv"
TABLE = "results/tables/{run}/{table}"  # {table}: table3_purification.md, table4_detection.csv ...
FIGURE = "results/figures/{run}/{figure}"  # {figure}: figure1_examples.png, training_curves.png ...
# mean and sd over the runs of `seeds` ({name}: a group of runs, see `run_groups`)
SEED_TABLE = "results/seeds/{name}/tables/{table}"
SEED_FIGURE = "results/seeds/{name}/figures/{figure}"
# the reproduction page of a group (its runs over `seeds`, or its one run): every paper number beside ours
REPRODUCTION_TABLE = "results/reproduction/{name}/reproduction.csv"
REPRODUCTION_PAGE = "results/reproduction/{name}/reproduction.md"
# the groups of a list `classifier.training` side by side, a row block per method ({name}: dataset.name)
CLASSIFIERS_TABLE = "results/classifiers/{name}/tables/{table}"
AUTOENCODER_SWEEP_TABLE = "autoencoder_sweep.csv"  # in TABLE: one row per sweep point (issue 41)
AUTOENCODER_SWEEP_BY_SIZE = (
    "autoencoder_sweep_by_size.csv"  # in TABLE: recovery by perturbation size, per point
)
AUTOENCODER_SWEEP_FIGURE = "autoencoder_sweep.png"  # in FIGURE: recovery against clean accuracy, per point
AUTOENCODER_CROSS_TABLE = "autoencoder_cross.csv"  # in a docs group folder: classifiers x autoencoders
# natural corruptions (issue 43): one file per corruption of `corruptions.names`, every configured severity
CORRUPTED = "results/corrupted/{run}/{corruption}/test.h5"
CORRUPTION_ACCURACY = "corruption_accuracy.csv"  # in TABLE: classifier alone and through each purifier, long
CORRUPTION_TABLES = {  # in TABLE: the three tables of rule corruption_tables, and their Markdown page
    "classifier": "corruption_classifier.csv",
    "purifiers": "corruption_purifiers.csv",
    "false_alarms": "corruption_false_alarms.csv",
    "markdown": "corruptions.md",
}
WILDCARDS = (
    "run",
    "name",
    "purifier",
    "attack",
    "eps",
    "split",
    "method",
    "table",
    "figure",
    "point",
    "corruption",
)


# RobustBench: where its zoo keeps a model's checkpoint, and where a run's results go in its model_info format
ROBUSTBENCH_INFO = "results/robustbench/{run}/{attack}/eps{eps}.json"


def robustbench_zoo_file(model_dir: str | Path, dataset: str, threat_model: str, name: str) -> Path:
    """RobustBench's layout of its model zoo (robustbench.utils.load_model):
    <model_dir>/<dataset>/<threat_model>/<name>.pt."""
    return Path(model_dir) / dataset / threat_model / f"{name}.pt"


def path(pattern: str, **wildcards) -> str:
    """`pattern` with the given wildcards filled in (an `eps` number becomes its file tag); the ones not
    given stay wildcards, so `path(DATA)` is the pattern and `path(DATA, run="x")` one file."""
    if "eps" in wildcards and not isinstance(wildcards["eps"], str):
        wildcards["eps"] = eps_tag(wildcards["eps"])
    keep = {name: f"{{{name}}}" for name in WILDCARDS}
    return pattern.format(**{**keep, **wildcards})


def run_of(file: str | Path) -> str:
    """The run a pipeline file belongs to (`results/<stage>/<run>/...`); a path outside results/ is its own."""
    parts = Path(file).parts
    return parts[parts.index("results") + 2] if "results" in parts else str(file)


# ----------------------------------------------------------------------------- what changes results
# Config keys that decide only where and in what chunks a job runs, never what it computes: they are kept
# out of every rule's params (changing them re-runs nothing), and they are the only keys a job reads from
# the config itself (`snakemake_job.runtime_setting`). Everything else reaches jobs through rule params.
RUNTIME_KEYS = frozenset(
    {
        "device",
        "container",
        "classifier.eval_batch_size",
        "flow.eval_batch_size",
        "autoencoder.eval_batch_size",
        "latents.batch_size",
        "purification.batch_size",
        "corruptions.batch_size",
    }
)


def is_runtime_key(key: str) -> bool:
    """Whether the dotted config key is runtime-only: one of RUNTIME_KEYS or any key of a `resources` section."""
    return key in RUNTIME_KEYS or "resources" in key.split(".")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes: what pins a brought checkpoint or builder file, and what a model's
    metrics record of the model file they describe."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256_pin(path: str | Path, pinned: str, key: str) -> str:
    """The one check of a sha256 pin: `path`'s bytes must hash to `pinned`, else a ConfigError naming the
    config `key`, the file and both digests. Returns the digest found (the pinned one)."""
    found = file_sha256(path)
    if found != pinned:
        raise ConfigError(
            f"{key}: {path} has sha256 {found}, but the config pins {pinned}; refusing a file that is not the "
            "one pinned"
        )
    return found
