# Shared by the rules: config validation, every file pattern (named once), input functions, params and
# resources helpers. No rules here.
import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The project's package lives in src/ (jobs find the same one through workflow/scripts/_checkout.py).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from advdefense.config import (
    ConfigError,
    check_file_times,
    load_yaml,
    source_files,
    validate_config,
)
from advdefense.errors import PipelineFileError
from advdefense.plan import decisions
from advdefense.plan.builder_spec import builder_source
from advdefense.plan.detector_specs import DETECTORS, PAPER_DETECTOR
from advdefense.plan.jobs import attack_job, detection_job
from advdefense.plan.names import (
    ADAPTIVE,
    ATTACK,
    ATTACK_SHARD,
    ATTACK_SUMMARY,
    AUTOENCODER,
    AUTOENCODER_EPOCHS,
    AUTOENCODER_METRICS,
    AUTOENCODER_POINT,
    AUTOENCODER_POINT_EPOCHS,
    AUTOENCODER_POINT_METRICS,
    AUTOENCODER_POINT_STATE,
    AUTOENCODER_STATE,
    AUTOENCODER_SWEEP_BY_SIZE,
    AUTOENCODER_SWEEP_FIGURE,
    AUTOENCODER_SWEEP_TABLE,
    CLASSIFIER,
    CLASSIFIER_EPOCHS,
    CLASSIFIER_METRICS,
    CLASSIFIER_STATE,
    CLASSIFIERS_TABLE,
    CORRUPTED,
    CORRUPTION_ACCURACY,
    CORRUPTION_TABLES,
    DATA,
    DETECTION_AWARE,
    DETECTION_EVALUATION,
    DETECTION_MODELS,
    FIGURE,
    FLOW,
    FLOW_EPOCHS,
    FLOW_METRICS,
    FLOW_STATE,
    LATENTS_ATTACK,
    LATENTS_CLEAN,
    MMD_POWER,
    PURIFIED_ATTACK,
    PURIFIED_CLEAN,
    REPRODUCTION_PAGE,
    REPRODUCTION_TABLE,
    ROBUSTBENCH_INFO,
    SEED_FIGURE,
    SEED_TABLE,
    TABLE,
    attack_key,
    eps_tag,
    file_sha256,
    is_runtime_key,
    path,
    run_groups,
    run_plan,
    runs,
)
from advdefense.plan.purifier_specs import PURIFIERS, purifier_spec, sweep_point
from advdefense.plan.purifier_specs import purifier_settings as purifier_settings_of
from advdefense.plan.training_specs import run_training_settings

# Names (file patterns, tags, run names) come from advdefense.plan.names and decisions (which splits are
# attacked, which models a detector job loads ...) from advdefense.plan.decisions: torch-free, so that building
# the DAG loads no model library. This file turns them into input functions and params.
# Schema, defaults and every check that the configuration and the data source allow (attack classes and
# parameter ranges, epsilon tags, subset sizes ...) before any job runs or any output is deleted.
try:
    # each file as written: Snakemake's own reading keeps the last of a key given twice and expands aliases
    for _file in workflow.configfiles:
        load_yaml(_file)
    _validated = validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
    # a file modified in the future would make Snakemake delete finished outputs (only the main process looks:
    # a job's own outputs are new)
    if workflow.is_main_process:
        check_file_times(["results", *source_files(_validated)])
# a bad key, or a bad data file read to count its images
except (ConfigError, PipelineFileError) as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)

DATASET = config["dataset"]["name"]
# `seeds`: the whole pipeline once per seed, each in its own run `<group>-seed<s>` (its own dataset split,
# models, attacks, detectors), gathered into mean and sd over seeds; null: one run named <group>
# with `seed`. Gathered: results/seeds/<group>/{tables,figures}/. A group is <name>, or <name>-<method> for
# each method of a list `classifier.training` (gathered side by side: results/classifiers/<name>/tables/).
RUNS = runs(config)
RUN_PLAN = run_plan(config)  # run -> (group, seed, training method)
GROUPS = run_groups(config)  # group -> training method
ATTACKS = config["attacks"]
# the splits some attack runs on (each attack: `attacks.<name>.splits`, default attack_defaults.splits)
SPLITS = decisions.attacked_splits(config)


wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+",  # a run: <group>, or <group>-seed<s> for each of `seeds`
    name=r"[A-Za-z0-9_.-]+",  # a group (dataset.name, or <dataset.name>-<method>): its runs of `seeds` gathered
    attack=r"[A-Za-z0-9_-]+",
    purifier=r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?",  # a registered purifier, or autoencoder.<point> of the sweep
    point=r"[A-Za-z0-9_]+",
    corruption=r"[a-z_]+",
    eps=r"[0-9.]+(e-?[0-9]+)?",
    split=r"train|test|calibration",
    shard=r"[0-9]+",
    shards=r"[0-9]+",


# ----------------------------------------------------------------------------- files
SHARDS = config["attack_defaults"]["shards"]


def attack_files(run):
    return [
        path(ATTACK, run=run, attack=name, eps=eps, split=split)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in spec["splits"]
    ]


def latent_files(run):
    """Clean latents of every split the detectors use, and the latents of the attack files a detector reads
    (the attacks of `detection.attacks`)."""
    clean = [
        path(LATENTS_CLEAN, run=run, split=split)
        for split in decisions.latent_clean_splits(config)
    ]
    return clean + [
        path(LATENTS_ATTACK, run=run, attack=name, eps=eps, split=split)
        for name in decisions.detection_attacks(config)
        for eps in ATTACKS[name]["epsilons"]
        for split in ATTACKS[name]["splits"]
    ]


def table3_columns():
    """[[attack, epsilon], ...]: Table 3's columns (lists, as Snakemake compares a rule's params)."""
    return [[name, eps] for name, eps in decisions.table3_columns(config)]


def table3_inputs(run):
    """{'purified': [...], 'adaptive': [...], 'clean': [...]}: the test files of Table 3, purifier by purifier
    (`purification.methods`) and, within one, in column order; the clean test images through each purifier.
    """
    columns = decisions.table3_columns(config)
    purifiers = decisions.purifiers(config)
    purified = [
        path(PURIFIED_ATTACK, run=run, purifier=p, attack=name, eps=eps, split="test")
        for p in purifiers
        for name, eps in columns
    ]
    adaptive = []
    if config["purification"]["adaptive"]["enabled"]:
        adaptive = [
            path(ADAPTIVE, run=run, purifier=p, attack=name, eps=eps)
            for p in purifiers
            for name, eps in columns
        ]
    clean = [path(PURIFIED_CLEAN, run=run, purifier=p, split="test") for p in purifiers]
    return {"purified": purified, "adaptive": adaptive, "clean": clean}


def purified_test_files(run):
    """Every attack's test files through every purifier."""
    return [
        path(PURIFIED_ATTACK, run=run, purifier=p, attack=name, eps=eps, split="test")
        for p in decisions.purifiers(config)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
    ]


def adaptive_test_files(run):
    """The adaptive attacks' files (Table 3's columns, through each purifier), where the adaptive attack runs."""
    return table3_inputs(run)["adaptive"]


def purification_targets(run):
    if not decisions.purifies(config):
        return []
    splits = decisions.purification_splits(config)
    files = [
        path(PURIFIED_ATTACK, run=run, purifier=p, attack=name, eps=eps, split=split)
        for p in decisions.purifiers(config)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in splits
        if split in spec["splits"]
    ]
    return files + [path(TABLE, run=run, table="table3_purification.md")]


def purifier_models(wildcards):
    """{model: checkpoint} of the models of other stages the job's purifier loads (the autoencoder's; a sweep
    point's own autoencoder for `autoencoder.<point>`)."""
    point = sweep_point(wildcards.purifier)
    models = {
        "autoencoder": (
            AUTOENCODER if point is None else path(AUTOENCODER_POINT, point=point)
        )
    }
    return {
        name: path(models[name], run=wildcards.run)
        for name in purifier_spec(wildcards.purifier).needs
    }


def purifier_settings(wildcards):
    """The job's purifier's block `purification.<name>` ({} where it has none; a sweep point's: the
    autoencoder's)."""
    name = "autoencoder" if sweep_point(wildcards.purifier) else wildcards.purifier
    return canonical(purifier_settings_of(config, name))


def points_pattern(points):
    """A wildcard constraint matching exactly these sweep points (none: a pattern that matches nothing)."""
    return "|".join(re.escape(p) for p in points) or r"(?!x)x"


def autoencoder_point_settings(wildcards):
    """The settings sweep point `{point}`'s autoencoder is trained with (plan.decisions.autoencoder_sweep)."""
    return canonical(decisions.autoencoder_sweep(config)[wildcards.point])


def sweep_inputs(run):
    """The files of the autoencoder sweep's table: per point its metrics, its clean test file, its file of each
    sweep attack and its adaptive attack's file (plan.decisions)."""
    names = decisions.sweep_purifiers(config)
    columns = decisions.sweep_columns(config)
    adaptive = decisions.sweep_adaptive(config)
    return {
        "metrics": [
            path(AUTOENCODER_POINT_METRICS, run=run, point=sweep_point(p))
            for p in names
        ],
        "clean": [
            path(PURIFIED_CLEAN, run=run, purifier=p, split="test") for p in names
        ],
        "purified": [
            path(PURIFIED_ATTACK, run=run, purifier=p, attack=a, eps=e, split="test")
            for p in names
            for a, e in columns
        ],
        "attacks": [
            path(ATTACK, run=run, attack=a, eps=e, split="test") for a, e in columns
        ],
        "adaptive": [
            path(ADAPTIVE, run=run, purifier=p, attack=adaptive[0], eps=adaptive[1])
            for p in names
            if adaptive is not None
        ],
    }


def sweep_targets(run):
    if not decisions.sweep_purifiers(config):
        return []
    return [
        path(TABLE, run=run, table=AUTOENCODER_SWEEP_TABLE),
        path(FIGURE, run=run, figure=AUTOENCODER_SWEEP_FIGURE),
    ]


def adaptive_eot_samples(wildcards):
    """Draws per step through a random purifier (EOT); None for a deterministic one (its jobs ignore the key)."""
    if purifier_spec(wildcards.purifier).random:
        return config["purification"]["adaptive"]["eot_samples"]
    return None


def detection_keys():
    """[[attack, eps, key], ...] for every attack the detectors use (`detection.attacks`) and its epsilons."""
    return [
        [name, eps, attack_key(name, eps)]
        for name, eps in decisions.detection_keys(config)
    ]


def detection_inputs(wildcards, method=None):
    """Named inputs of a detector job, from its declaration (plan.detector_specs): latents (latent and bits/dim
    detectors) or attack files (pixel detectors) of every attack key and split, the clean calibration inputs,
    the dataset, and the models of other stages the detector (or the detector-aware attack) uses.
    """
    method = method or wildcards.method
    run = wildcards.run
    spec = DETECTORS.get(method)
    on_latents = spec is not None and spec.on_flow_outputs
    inputs = {"data": path(DATA, run=run)}
    for name, eps, key in detection_keys():
        for split in ("train", "test"):
            pattern = LATENTS_ATTACK if on_latents else ATTACK
            inputs[f"{key}__{split}"] = path(
                pattern, run=run, attack=name, eps=eps, split=split
            )
    if on_latents:
        for split in ("train", "test", "calibration"):
            inputs[f"clean__{split}"] = path(LATENTS_CLEAN, run=run, split=split)
    models = {"classifier": CLASSIFIER, "flow": FLOW, "autoencoder": AUTOENCODER}
    for name in sorted(decisions.detector_models(config, method)):
        inputs[name] = path(models[name], run=run)
    # the corrupted clean images: each detector's false-alarm rate on them (set `corruption`)
    if method != "mmd":
        inputs.update({f"corrupted__{k}": v for k, v in corrupted_files(run).items()})
    return inputs


def corrupted_files(run):
    """{corruption: its corrupted-images file} of `corruptions.names` (none: {})."""
    return {
        name: path(CORRUPTED, run=run, corruption=name)
        for name in decisions.corruptions(config)
    }


def corruption_accuracy_inputs(wildcards):
    """The dataset, the classifier, every corrupted-images file (named by corruption) and the models of other
    stages the run's purifiers load."""
    run = wildcards.run
    inputs = {"data": path(DATA, run=run), "model": path(CLASSIFIER, run=run)}
    inputs.update({f"corrupted__{k}": v for k, v in corrupted_files(run).items()})
    models = {"autoencoder": AUTOENCODER}
    for purifier in decisions.purifiers(config):
        for name in purifier_spec(purifier).needs:
            inputs[name] = path(models[name], run=run)
    return inputs


def corruption_table_inputs(wildcards):
    """The accuracy table and every detector's evaluation (its false-alarm rows)."""
    run = wildcards.run
    inputs = {"accuracy": path(TABLE, run=run, table=CORRUPTION_ACCURACY)}
    if decisions.detects(config):
        for method in config["detection"]["methods"]:
            inputs[f"evaluation__{method}"] = path(
                DETECTION_EVALUATION, run=run, method=method
            )
    return inputs


def robustbench_corruption_input(wildcards):
    """The run's corruption accuracy table where every CIFAR-10-C corruption at every severity is configured:
    its mean is the model_info entry's `corruptions_acc`."""
    if not decisions.robustbench_corruptions(config):
        return {}
    return {"corruptions": path(TABLE, run=wildcards.run, table=CORRUPTION_ACCURACY)}


def corruption_targets(run):
    if not decisions.corruptions(config):
        return []
    return list(corrupted_files(run).values()) + [
        path(TABLE, run=run, table=t)
        for t in (CORRUPTION_ACCURACY, *CORRUPTION_TABLES.values())
    ]


def detection_targets(run):
    if not decisions.detects(config):
        return []
    return [
        path(TABLE, run=run, table=name)
        for name in ("table4_detection.md", "table5_comparison.md")
    ]


def figure1_attack_files(run):
    """{attack: test file} of up to three attacks at their first epsilon (the paper shows FGSM, PGD,
    DeepFool)."""
    return {
        name: path(ATTACK, run=run, attack=name, eps=spec["epsilons"][0], split="test")
        for name, spec in list(ATTACKS.items())[:3]
    }


def training_logs_of(run):
    """{model: its per-epoch CSV} of every model trained here (none for a brought classifier)."""
    epochs = {
        "classifier": CLASSIFIER_EPOCHS,
        "flow": FLOW_EPOCHS,
        "autoencoder": AUTOENCODER_EPOCHS,
    }
    return {
        model: path(epochs[model], run=run)
        for model in decisions.trained_models(config)
    }


def training_logs(wildcards):
    return training_logs_of(wildcards.run)


def figure_targets(run):
    names = ["training_curves.png"] if training_logs_of(run) else []
    if ATTACKS:
        names += ["figure1_examples.png", "accuracy_vs_epsilon.png"]
    if detection_targets(run):
        names += ["roc_latent_detector.png", "auroc_vs_epsilon.png"]
    return [path(FIGURE, run=run, figure=name) for name in names]


def run_targets(run):
    """Every file of a run, not only the tables: a file that a finished job made and that has gone missing
    (deleted, or lost with a killed job) is made again by a plain `snakemake`, even where the tables built
    from it are newer."""
    targets = [
        path(DATA, run=run),
        path(CLASSIFIER, run=run),
        path(CLASSIFIER_METRICS, run=run),
    ]
    if ATTACKS:
        targets += attack_files(run) + [path(ATTACK_SUMMARY, run=run)]
        targets += robustbench_info_files(run)
    if config["latents"]["enabled"]:
        targets += [path(FLOW, run=run), path(FLOW_METRICS, run=run)]
        targets += latent_files(run)
    if decisions.trains_autoencoder(config):
        targets.append(path(AUTOENCODER, run=run))
    targets += purification_targets(run) + adaptive_test_files(run) + sweep_targets(run)
    if detection_targets(run):
        methods = config["detection"]["methods"]
        targets += [path(DETECTION_EVALUATION, run=run, method=m) for m in methods]
        targets += [path(DETECTION_AWARE, run=run, method=m) for m in methods]
        if config["detection"]["mmd"]["enabled"]:
            targets.append(path(MMD_POWER, run=run))
    targets += detection_targets(run)
    targets += figure_targets(run)
    targets += corruption_targets(run)
    return targets


def seed_targets():
    if config["seeds"] is None:
        return []
    targets = []
    for group in GROUPS:
        targets += [
            path(SEED_TABLE, name=group, table=f"{t}.csv")
            for t in decisions.seed_tables(config)
        ]
        if ATTACKS:
            targets.append(
                path(SEED_FIGURE, name=group, figure="accuracy_vs_epsilon.png")
            )
        if decisions.detects(config):
            targets.append(path(SEED_FIGURE, name=group, figure="auroc_vs_epsilon.png"))
    return targets


def classifier_targets():
    """Several training methods: each table of the groups gathered side by side."""
    if len(GROUPS) < 2:
        return []
    return [
        path(CLASSIFIERS_TABLE, name=DATASET, table=f"{t}.csv")
        for t in decisions.seed_tables(config)
    ]


def group_runs(group):
    """The runs of a group (one per seed), in the order of `seeds`."""
    if group not in GROUPS:
        raise WorkflowError(
            f"{group}: not a group of runs of this configuration (groups: {', '.join(GROUPS)})"
        )
    return [run for run, (g, _, _) in RUN_PLAN.items() if g == group]


def robustbench_info_files(run):
    """The RobustBench model_info JSON of each AutoAttack file of the run's test split."""
    return [
        path(ROBUSTBENCH_INFO, run=run, attack=name, eps=eps_tag(eps))
        for name, eps in decisions.autoattack_results(config)
    ]


def all_targets():
    return (
        [t for run in RUNS for t in run_targets(run)]
        + seed_targets()
        + classifier_targets()
        + reproduction_targets()
    )


def reproduction_targets():
    """Each group's reproduction page, where the config runs one of the paper's attacks."""
    if decisions.reproduction_epsilon(config) is None:
        return []
    return [path(REPRODUCTION_PAGE, name=group) for group in GROUPS]


def reproduction_inputs(wildcards):
    """Per run of the group (in the order of `seeds`): the files the page reads (`reproduction.RunFiles`)."""
    runs = group_runs(wildcards.name)
    inputs = {
        "metrics": [path(CLASSIFIER_METRICS, run=run) for run in runs],
        "summaries": [path(ATTACK_SUMMARY, run=run) for run in runs],
    }
    if decisions.purifies(config) and "autoencoder" in decisions.purifiers(config):
        inputs["table3"] = [
            path(TABLE, run=run, table="table3_purification.csv") for run in runs
        ]
    if decisions.detects(config):
        for key, table in (
            ("table4", "table4_detection.csv"),
            ("table5", "table5_comparison.csv"),
        ):
            inputs[key] = [path(TABLE, run=run, table=table) for run in runs]
        inputs["models"] = [
            path(DETECTION_MODELS, run=run, method=PAPER_DETECTOR) for run in runs
        ]
    if decisions.sweep_purifiers(config):
        inputs["sweep"] = [
            path(TABLE, run=run, table=AUTOENCODER_SWEEP_TABLE) for run in runs
        ]
        inputs["sweep_by_size"] = [
            path(TABLE, run=run, table=AUTOENCODER_SWEEP_BY_SIZE) for run in runs
        ]
    return inputs


def seed_table_inputs(wildcards):
    """One run's table per seed: `summary` is the attack summary, the others come from results/tables."""
    if wildcards.table == "summary":
        return [path(ATTACK_SUMMARY, run=run) for run in group_runs(wildcards.name)]
    return [
        path(TABLE, run=run, table=f"{wildcards.table}.csv")
        for run in group_runs(wildcards.name)
    ]


def seeds_of_group(wildcards):
    return [RUNS[run] for run in group_runs(wildcards.name)]


def classifier_table_inputs(wildcards):
    """Each group's table (gathered over seeds where there are seeds), in the order of classifier.training."""
    out = {}
    for group in GROUPS:
        if config["seeds"] is not None:
            out[group] = path(SEED_TABLE, name=group, table=f"{wildcards.table}.csv")
        elif wildcards.table == "summary":
            out[group] = path(ATTACK_SUMMARY, run=group)
        else:
            out[group] = path(TABLE, run=group, table=f"{wildcards.table}.csv")
    return out


def run_classifier_settings(wildcards):
    """The `classifier` settings of the run's training method (plan.training_specs.run_training_settings)."""
    if wildcards.run not in RUN_PLAN:
        raise WorkflowError(
            f"{wildcards.run}: not a run of this configuration (runs: {', '.join(RUNS)})"
        )
    settings = result_settings(
        "classifier",
        leave_out=(
            "classifier.source",
            "classifier.checkpoint",
            "classifier.robustbench",
        ),
    )
    return canonical(run_training_settings(settings, RUN_PLAN[wildcards.run][2]))


def seed_of(wildcards):
    """The seed of the job's run (`seed`, or one of `seeds`)."""
    if wildcards.run not in RUNS:
        raise WorkflowError(
            f"{wildcards.run}: not a run of this configuration (runs: {', '.join(RUNS)})"
        )
    return RUNS[wildcards.run]


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
    return canonical(decisions.dataset_settings(config))


def robustbench_checkpoint_if_present():
    """The RobustBench zoo checkpoint of `classifier.robustbench` where the file is in place (an input of the
    import, so that replacing it imports again); empty where the import job is to download it.
    """
    zoo_file = decisions.robustbench_checkpoint(config)
    return [str(zoo_file)] if zoo_file.is_file() else []


def builder_files():
    """The Python file that defines `classifier.checkpoint.builder` (empty without one, or for a module without
    a source file): an input of the import, so that editing it imports the classifier again.
    """
    spec = config["classifier"]["checkpoint"]["builder"]
    source = builder_source(spec) if spec else None
    return [str(source)] if source is not None else []


def attack_job_params(wildcards, split=None):
    """The record of an attack job (`plan.jobs.AttackJob`, as params): what it runs (Foolbox class, norm,
    constructor parameters; not the other epsilons), on which images, with which seed and batches.
    """
    configured_attack(wildcards)  # an unknown attack is a clear error
    split = split or wildcards.split
    return attack_job(
        config, wildcards.attack, attack_epsilon(wildcards), split, seed_of(wildcards)
    ).params()


def detection_job_params(wildcards):
    """The record of a detect job (`plan.jobs.DetectionJob`, as params): the detector's settings, the attack
    keys it learns from (sorted), the false-positive rates, the noise controls, the detector-aware attack's
    settings (only for the detectors it attacks) and the seed."""
    return detection_job(config, wildcards.method, seed_of(wildcards)).params()


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


def attacked_count(wildcards):
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
