# Shared by the rules: config validation, every file pattern (named once), input functions, params and
# resources helpers. No rules here.
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The project's package lives in src/ (jobs find the same one through workflow/scripts/_checkout.py).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from advdefense.attacks import eps_tag
from advdefense.config import (
    ConfigError,
    attacked_splits,
    detection_attacks,
    validate_config,
)
from advdefense.detection import attack_key
from advdefense.detectors import REGISTRY
from advdefense.errors import PipelineFileError
from advdefense.h5io import file_sha256
from advdefense.models.external import builder_source
from advdefense.runtime import is_runtime_key

# Schema, defaults and every check that the configuration and the data source allow (attack classes and
# parameter ranges, epsilon tags, subset sizes ...) before any job runs or any output is deleted.
try:
    _validated = validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
# a bad key, or a bad data file read to count its images
except (ConfigError, PipelineFileError) as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)

DATASET = config["dataset"]["name"]
# `seeds`: the whole pipeline once per seed, each in its own run `<name>-seed<s>` (its own dataset split,
# models, attacks, detectors), gathered into mean and sd over seeds; null: one run named <name>
# with `seed`. Gathered: results/seeds/<name>/{tables,figures}/
RUNS = (
    {f"{DATASET}-seed{s}": s for s in config["seeds"]}
    if config["seeds"] is not None
    else {DATASET: config["seed"]}
)
ATTACKS = config["attacks"]
# the splits some attack runs on (each attack: `attacks.<name>.splits`, default attack_defaults.splits)
SPLITS = attacked_splits(config)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    attack=r"[A-Za-z0-9_-]+",
    eps=r"[0-9.]+(e-?[0-9]+)?",
    split=r"train|test|calibration",
    shard=r"[0-9]+",
    shards=r"[0-9]+",


# ----------------------------------------------------------------------------- file patterns
DATA = "results/data/{dataset}.h5"
CLASSIFIER = "results/classifier/{dataset}/model.pt"
CLASSIFIER_METRICS = "results/classifier/{dataset}/metrics.json"
CLASSIFIER_EPOCHS = "results/classifier/{dataset}/epochs.csv"
CLASSIFIER_STATE = "results/classifier/{dataset}/train_state.pt"
ATTACK = "results/attacks/{dataset}/{attack}/eps{eps}/{split}.h5"
ATTACK_SHARD = (
    "results/attacks/{dataset}/{attack}/eps{eps}/shards/{split}.{shard}-of-{shards}.h5"
)
SHARDS = config["attack_defaults"]["shards"]
ATTACK_SUMMARY = "results/attacks/{dataset}/summary.csv"
FLOW = "results/flow/{dataset}/model.pt"
FLOW_METRICS = "results/flow/{dataset}/metrics.json"
FLOW_EPOCHS = "results/flow/{dataset}/epochs.csv"
FLOW_STATE = "results/flow/{dataset}/train_state.pt"
LATENTS_CLEAN = "results/latents/{dataset}/clean/{split}.h5"
LATENTS_ATTACK = "results/latents/{dataset}/{attack}/eps{eps}/{split}.h5"
AUTOENCODER = "results/autoencoder/{dataset}/model.pt"
AUTOENCODER_METRICS = "results/autoencoder/{dataset}/metrics.json"
AUTOENCODER_EPOCHS = "results/autoencoder/{dataset}/epochs.csv"
AUTOENCODER_STATE = "results/autoencoder/{dataset}/train_state.pt"
PURIFIED_CLEAN = "results/purified/{dataset}/clean/{split}.h5"
PURIFIED_ATTACK = "results/purified/{dataset}/{attack}/eps{eps}/{split}.h5"
ADAPTIVE = "results/adaptive/{dataset}/{attack}/eps{eps}/test.h5"
DETECTION_EVALUATION = "results/detection/{dataset}/{method}/evaluation.csv"
DETECTION_MODELS = "results/detection/{dataset}/{method}/models"
DETECTION_AWARE = "results/detection/{dataset}/{method}/aware.csv"
MMD_POWER = "results/detection/{dataset}/mmd/power.csv"
TABLE = "results/tables/{dataset}/{table}"  # {table}: table3_purification.md, table4_detection.csv ...
FIGURE = "results/figures/{dataset}/{figure}"  # {figure}: figure1_examples.png, training_curves.png ...
SEED_TABLE = (
    "results/seeds/{dataset}/tables/{table}"  # mean and sd over the runs of `seeds`
)
SEED_FIGURE = "results/seeds/{dataset}/figures/{figure}"


def path(pattern, **wildcards):
    """`pattern` with the given wildcards filled in (an `eps` number becomes its file tag); the ones not
    given stay wildcards, so `path(DATA)` is the pattern and `path(DATA, dataset="x")` one file.
    """
    if "eps" in wildcards and not isinstance(wildcards["eps"], str):
        wildcards["eps"] = eps_tag(wildcards["eps"])
    keep = {
        name: f"{{{name}}}"
        for name in ("dataset", "attack", "eps", "split", "method", "table", "figure")
    }
    return pattern.format(**{**keep, **wildcards})


def attack_files(dataset=DATASET):
    return [
        path(ATTACK, dataset=dataset, attack=name, eps=eps, split=split)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in spec["splits"]
    ]


def latent_files(dataset=DATASET):
    """Clean latents of every split the detectors use, and the latents of the attack files a detector reads
    (the attacks of `detection.attacks`)."""
    clean = [
        path(LATENTS_CLEAN, dataset=dataset, split=split)
        for split in latent_clean_splits()
    ]
    return clean + [
        path(LATENTS_ATTACK, dataset=dataset, attack=name, eps=eps, split=split)
        for name in detection_attacks(config)
        for eps in ATTACKS[name]["epsilons"]
        for split in ATTACKS[name]["splits"]
    ]


def purification_splits():
    return config["purification"]["splits"] or SPLITS


def table3_columns():
    names = config["tables"]["table3"]["attacks"] or list(ATTACKS)
    return [[name, float(eps)] for name in names for eps in ATTACKS[name]["epsilons"]]


def table3_inputs(dataset=DATASET):
    """{'purified': [...], 'adaptive': [...]}: the test files of Table 3's columns, in column order."""
    purified = [
        path(PURIFIED_ATTACK, dataset=dataset, attack=name, eps=eps, split="test")
        for name, eps in table3_columns()
    ]
    adaptive = []
    if config["purification"]["adaptive"]["enabled"]:
        adaptive = [
            path(ADAPTIVE, dataset=dataset, attack=name, eps=eps)
            for name, eps in table3_columns()
        ]
    return {"purified": purified, "adaptive": adaptive}


def purified_test_files(dataset=DATASET):
    if not config["purification"]["enabled"]:
        return []
    return [
        path(PURIFIED_ATTACK, dataset=dataset, attack=name, eps=eps, split="test")
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
    ]


def adaptive_test_files(dataset=DATASET):
    """The adaptive attacks' files (Table 3's columns), where the adaptive attack runs."""
    if not config["purification"]["enabled"]:
        return []
    return table3_inputs(dataset)["adaptive"]


def purification_targets(dataset=DATASET):
    if not (config["purification"]["enabled"] and ATTACKS):
        return []
    files = [
        path(PURIFIED_ATTACK, dataset=dataset, attack=name, eps=eps, split=split)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in purification_splits()
        if split in spec["splits"]
    ]
    return files + [path(TABLE, dataset=dataset, table="table3_purification.md")]


def detection_keys():
    """[[attack, eps, key], ...] for every attack the detectors use (`detection.attacks`) and its epsilons."""
    return [
        [name, float(eps), attack_key(name, eps)]
        for name in detection_attacks(config)
        for eps in ATTACKS[name]["epsilons"]
    ]


def latent_clean_splits():
    """Splits whose clean latents are made: the attacked ones, and calibration for latent detectors."""
    detection = config["detection"]
    latent_detectors = detection["enabled"] and any(
        REGISTRY[m].inputs != "pixels" for m in detection["methods"]
    )
    return SPLITS + (["calibration"] if latent_detectors and ATTACKS else [])


def aware_methods():
    """The detectors the detector-aware attack targets (null: every configured differentiable one)."""
    detection = config["detection"]
    if not detection["aware"]["enabled"]:
        return []
    if detection["aware"]["methods"] is not None:
        return detection["aware"]["methods"]
    return [m for m in detection["methods"] if REGISTRY[m].differentiable]


def detection_inputs(wildcards, method=None):
    """Named inputs of a detector job, from the registry: latents (latent and bits/dim detectors) or attack
    files (pixel detectors) of every attack key and split, the clean calibration inputs, the dataset, and the
    models of other stages the detector (or the detector-aware attack) uses."""
    method = method or wildcards.method
    d = wildcards.dataset
    detector = REGISTRY.get(method)
    on_latents = detector is not None and detector.inputs != "pixels"
    inputs = {"data": path(DATA, dataset=d)}
    for name, eps, key in detection_keys():
        for split in ("train", "test"):
            pattern = LATENTS_ATTACK if on_latents else ATTACK
            inputs[f"{key}__{split}"] = path(
                pattern, dataset=d, attack=name, eps=eps, split=split
            )
    if on_latents:
        for split in ("train", "test", "calibration"):
            inputs[f"clean__{split}"] = path(LATENTS_CLEAN, dataset=d, split=split)
    needs = set(detector.needs) if detector is not None else set()
    if method in aware_methods():
        needs |= {"classifier"} | ({"flow"} if on_latents else set())
    models = {"classifier": CLASSIFIER, "flow": FLOW, "autoencoder": AUTOENCODER}
    for name in sorted(needs):
        inputs[name] = path(models[name], dataset=d)
    return inputs


def detection_targets(dataset=DATASET):
    if not (config["detection"]["enabled"] and ATTACKS):
        return []
    return [
        path(TABLE, dataset=dataset, table=name)
        for name in ("table4_detection.md", "table5_comparison.md")
    ]


def figure1_attack_files(dataset=DATASET):
    """Test files of up to three attacks at their first epsilon (the paper shows FGSM, PGD, DeepFool)."""
    return [
        path(
            ATTACK, dataset=dataset, attack=name, eps=spec["epsilons"][0], split="test"
        )
        for name, spec in list(ATTACKS.items())[:3]
    ]


def training_logs_of(dataset):
    """{model: its per-epoch CSV} of every model trained here (none for a brought classifier)."""
    logs = {}
    if config["classifier"]["source"] == "train":
        logs["classifier"] = path(CLASSIFIER_EPOCHS, dataset=dataset)
    if config["latents"]["enabled"] and config["flow"]["source"] == "train":
        logs["flow"] = path(FLOW_EPOCHS, dataset=dataset)
    if config["purification"]["enabled"] or (
        config["detection"]["enabled"]
        and ATTACKS
        and any(
            "autoencoder" in REGISTRY[m].needs for m in config["detection"]["methods"]
        )
    ):
        logs["autoencoder"] = path(AUTOENCODER_EPOCHS, dataset=dataset)
    return logs


def training_logs(wildcards):
    return training_logs_of(wildcards.dataset)


def figure_targets(dataset=DATASET):
    names = ["training_curves.png"] if training_logs_of(dataset) else []
    if ATTACKS:
        names += ["figure1_examples.png", "accuracy_vs_epsilon.png"]
    if detection_targets(dataset):
        names += ["roc_latent_detector.png", "auroc_vs_epsilon.png"]
    return [path(FIGURE, dataset=dataset, figure=name) for name in names]


def run_targets(run):
    """Every file of a run, not only the tables: a file that a finished job made and that has gone missing
    (deleted, or lost with a killed job) is made again by a plain `snakemake`, even where the tables built
    from it are newer."""
    targets = [
        path(DATA, dataset=run),
        path(CLASSIFIER, dataset=run),
        path(CLASSIFIER_METRICS, dataset=run),
    ]
    if ATTACKS:
        targets += attack_files(run) + [path(ATTACK_SUMMARY, dataset=run)]
    if config["latents"]["enabled"]:
        targets += [path(FLOW, dataset=run), path(FLOW_METRICS, dataset=run)]
        targets += latent_files(run)
    if "autoencoder" in training_logs_of(run):
        targets.append(path(AUTOENCODER, dataset=run))
    targets += purification_targets(run) + adaptive_test_files(run)
    if detection_targets(run):
        methods = config["detection"]["methods"]
        targets += [path(DETECTION_EVALUATION, dataset=run, method=m) for m in methods]
        targets += [path(DETECTION_AWARE, dataset=run, method=m) for m in methods]
        if config["detection"]["mmd"]["enabled"]:
            targets.append(path(MMD_POWER, dataset=run))
    targets += detection_targets(run)
    targets += figure_targets(run)
    return targets


def seed_tables():
    """Base names of the tables every run makes; the seeds gather each into mean and sd."""
    names = ["summary"] if ATTACKS else []
    if config["purification"]["enabled"] and ATTACKS:
        names.append("table3_purification")
    if config["detection"]["enabled"] and ATTACKS:
        names += [
            "table4_detection",
            "table5_comparison",
            "detection_generalisation",
            "detection_defended",
        ]
    return names


def seed_targets():
    if config["seeds"] is None:
        return []
    targets = [
        path(SEED_TABLE, dataset=DATASET, table=f"{t}.csv") for t in seed_tables()
    ]
    if ATTACKS:
        targets.append(
            path(SEED_FIGURE, dataset=DATASET, figure="accuracy_vs_epsilon.png")
        )
    if config["detection"]["enabled"] and ATTACKS:
        targets.append(
            path(SEED_FIGURE, dataset=DATASET, figure="auroc_vs_epsilon.png")
        )
    return targets


def all_targets():
    return [t for run in RUNS for t in run_targets(run)] + seed_targets()


def seed_table_inputs(wildcards):
    """One run's table per seed: `summary` is the attack summary, the others come from results/tables."""
    if wildcards.table == "summary":
        return [path(ATTACK_SUMMARY, dataset=run) for run in RUNS]
    return [path(TABLE, dataset=run, table=f"{wildcards.table}.csv") for run in RUNS]


def seed_of(wildcards):
    """The seed of the job's run (`seed`, or one of `seeds`)."""
    if wildcards.dataset not in RUNS:
        raise WorkflowError(
            f"{wildcards.dataset}: not a run of this configuration (runs: {', '.join(RUNS)})"
        )
    return RUNS[wildcards.dataset]


# ----------------------------------------------------------------------------- params
def canonical(obj):
    """A key-sorted copy of a config value. Snakemake compares params by their text, so rule params
    go through this: re-ordering keys in a YAML file must not re-run anything."""
    return json.loads(json.dumps(obj, sort_keys=True))


def result_settings(section, leave_out=()):
    """The settings of a config section that change results (runtime-only keys and `leave_out` left out):
    what a stage's rule passes as params, so that changing any of them re-runs the stage and nothing else does.
    """

    def keep(prefix, value):
        if isinstance(value, dict):
            return {
                k: keep(f"{prefix}.{k}", v)
                for k, v in value.items()
                if not is_runtime_key(f"{prefix}.{k}")
                and f"{prefix}.{k}" not in leave_out
            }
        return value

    return canonical(keep(section, config[section]))


def dataset_settings():
    """The `dataset` keys that decide the dataset file: its source's own keys and the subset sizes."""
    data = config["dataset"]
    own = {
        "cifar10": ["root"],
        "cifar100": ["root", "labels"],
        "local": ["path", "labels"],
        "synthetic": ["synthetic"],
    }[data["source"]]
    keys = ["source", "train_size", "test_size", "calibration_size", *own]
    return canonical({k: data[k] for k in keys})


def builder_files():
    """The Python file that defines `classifier.checkpoint.builder` (empty without one, or for a module without
    a source file): an input of the import, so that editing it imports the classifier again.
    """
    spec = config["classifier"]["checkpoint"]["builder"]
    source = builder_source(spec) if spec else None
    return [str(source)] if source is not None else []


def attack_method(wildcards):
    """The method of an attack job: Foolbox class, norm and constructor parameters (not its epsilons)."""
    spec = configured_attack(wildcards)
    return canonical(
        {
            "class": spec["class"],
            "norm": spec["norm"],
            "params": spec.get("params") or {},
            "quantize": spec["quantize"],
            "restarts": spec["restarts"],
        }
    )


def attack_shards(wildcards):
    """The shard files of an attack job, in order (attack_defaults.shards of them)."""
    return [
        ATTACK_SHARD.format(**dict(wildcards.items()), shard=k, shards=SHARDS)
        for k in range(1, SHARDS + 1)
    ]


def configured_attack(wildcards):
    if wildcards.attack not in ATTACKS:
        raise WorkflowError(
            f"attacks.{wildcards.attack}: no such attack in the configuration (have {sorted(ATTACKS)})"
        )
    spec = ATTACKS[wildcards.attack]
    split = wildcards.get("split")
    if split is not None and split not in spec["splits"]:
        raise WorkflowError(
            f"attacks.{wildcards.attack}.splits: the attack does not run on the {split} split (its splits: {spec['splits']})"
        )
    return spec


def attack_epsilon(wildcards):
    """The configured epsilon whose file tag is the wildcard; unknown ones are a clear error."""
    for eps in configured_attack(wildcards)["epsilons"]:
        if eps_tag(eps) == wildcards.eps:
            return float(eps)
    raise WorkflowError(
        f"attacks.{wildcards.attack}.epsilons: no epsilon {wildcards.eps} (configured: {ATTACKS[wildcards.attack]['epsilons']})"
    )


def attacked_images(wildcards):
    """`attack_defaults.images` of the job's split: how many of its images every attack uses (the
    calibration split is never attacked: all of it)."""
    return config["attack_defaults"]["images"].get(wildcards.split)


# ----------------------------------------------------------------------------- resources
def threads_of(section):
    return config[section]["resources"]["threads"]


def resources_of(section, gpu=False):
    """Cluster-neutral resources of a rule from its config section's `resources` (runtime in minutes,
    mem_mb), plus one GPU token for jobs that use the device."""
    res = config[section]["resources"]
    return {
        "runtime": res["runtime"],
        "mem_mb": res["mem_mb"],
        **({"gpu": 1} if gpu else {}),
    }
