# Helpers shared by the rules: config validation, paths, parameters. No rules here.
import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The project's package lives in src/; the scripts put it on sys.path the same way (see their first lines).
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from advdefense.config import ConfigError, eps_tag, validate_config

try:
    _validated = validate_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)

DATASET = config["dataset"]["name"]
ATTACKS = config["attacks"]
SPLITS = config["attack_defaults"]["splits"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    attack=r"[A-Za-z0-9_-]+",
    eps=r"[0-9.]+(e-?[0-9]+)?",
    split=r"train|test",


def dataset_file(dataset=DATASET):
    return f"results/data/{dataset}.h5"


def classifier_file(dataset=DATASET, name="model.pt"):
    return f"results/classifier/{dataset}/{name}"


def attack_file(attack, eps, split, dataset=DATASET):
    return f"results/attacks/{dataset}/{attack}/eps{eps_tag(eps)}/{split}.h5"


def attack_files(dataset=DATASET):
    return [
        attack_file(name, eps, split, dataset)
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in SPLITS
    ]


def attack_summary_file(dataset=DATASET):
    return f"results/attacks/{dataset}/summary.csv"


def latent_files(dataset=DATASET):
    clean = [f"results/latents/{dataset}/clean/{split}.h5" for split in SPLITS]
    return clean + [path.replace("results/attacks/", "results/latents/", 1) for path in attack_files(dataset)]


def purification_splits():
    return config["purification"]["splits"] or SPLITS


def table3_columns():
    names = config["tables"]["table3"]["attacks"] or list(ATTACKS)
    return [[name, float(eps)] for name in names for eps in ATTACKS[name]["epsilons"]]


def table3_inputs(dataset=DATASET):
    """{'purified': {(attack, eps): path}, 'adaptive': {...}} for the columns of Table 3 (test split)."""
    purified, adaptive = {}, {}
    for name, eps in table3_columns():
        purified[(name, eps)] = f"results/purified/{dataset}/{name}/eps{eps_tag(eps)}/test.h5"
        if config["purification"]["adaptive"]["enabled"]:
            adaptive[(name, eps)] = f"results/adaptive/{dataset}/{name}/eps{eps_tag(eps)}/test.h5"
    return {"purified": purified, "adaptive": adaptive}


def purification_targets(dataset=DATASET):
    if not (config["purification"]["enabled"] and ATTACKS):
        return []
    files = [
        f"results/purified/{dataset}/{name}/eps{eps_tag(eps)}/{split}.h5"
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
        for split in purification_splits()
    ]
    return files + [f"results/tables/{dataset}/table3_purification.md"]


def detection_keys():
    """[[attack, eps, key], ...] for every configured attack and epsilon."""
    from advdefense.detection import attack_key

    return [[name, float(eps), attack_key(name, eps)] for name, spec in ATTACKS.items() for eps in spec["epsilons"]]


def detection_inputs(wildcards, method=None):
    """Named inputs of a detector job: latents for latent_mlp, images (+ autoencoder) otherwise."""
    method = method or wildcards.method
    d = wildcards.dataset
    inputs = {}
    for name, eps, key in detection_keys():
        tag = eps_tag(eps)
        for split in ("train", "test"):
            if method == "latent_mlp":
                inputs[f"{key}__{split}"] = f"results/latents/{d}/{name}/eps{tag}/{split}.h5"
            else:
                inputs[f"{key}__{split}"] = f"results/attacks/{d}/{name}/eps{tag}/{split}.h5"
    for split in ("train", "test"):
        if method == "latent_mlp":
            inputs[f"clean__{split}"] = f"results/latents/{d}/clean/{split}.h5"
    if method != "latent_mlp":
        inputs["data"] = f"results/data/{d}.h5"
    if method == "magnet":
        inputs["autoencoder"] = f"results/autoencoder/{d}/model.pt"
    return inputs


def detection_targets(dataset=DATASET):
    if not (config["detection"]["enabled"] and ATTACKS):
        return []
    return [f"results/tables/{dataset}/table4_detection.md", f"results/tables/{dataset}/table5_comparison.md"]


def figure1_attack_files(dataset=DATASET):
    """Test files of up to three attacks at their first epsilon (the paper shows FGSM, PGD, DeepFool)."""
    return [attack_file(name, spec["epsilons"][0], "test", dataset) for name, spec in list(ATTACKS.items())[:3]]


def purified_test_files(dataset=DATASET):
    if not config["purification"]["enabled"]:
        return []
    return [
        f"results/purified/{dataset}/{name}/eps{eps_tag(eps)}/test.h5"
        for name, spec in ATTACKS.items()
        for eps in spec["epsilons"]
    ]


def training_logs(wildcards):
    d = wildcards.dataset
    logs = {"classifier": f"results/classifier/{d}/epochs.csv"}
    if config["latents"]["enabled"] and config["flow"]["source"] == "train":
        logs["flow"] = f"results/flow/{d}/epochs.csv"
    if config["purification"]["enabled"] or "magnet" in config["detection"]["methods"]:
        logs["autoencoder"] = f"results/autoencoder/{d}/epochs.csv"
    return logs


def figure_targets(dataset=DATASET):
    targets = [f"results/figures/{dataset}/training_curves.png"]
    if ATTACKS:
        targets += [f"results/figures/{dataset}/figure1_examples.png", f"results/figures/{dataset}/accuracy_vs_epsilon.png"]
    if detection_targets(dataset):
        targets.append(f"results/figures/{dataset}/roc_latent_detector.png")
    return targets


def all_targets():
    targets = [dataset_file(), classifier_file(name="metrics.json")]
    if ATTACKS:
        targets.append(attack_summary_file())
    if config["latents"]["enabled"]:
        targets.append(f"results/flow/{DATASET}/metrics.json")
        targets += latent_files()
    targets += purification_targets()
    targets += detection_targets()
    targets += figure_targets()
    return targets


def canonical(obj):
    """A key-sorted copy of a config value. Snakemake compares params by their text, so rule params
    go through this: re-ordering keys in a YAML file must not re-run anything."""
    return json.loads(json.dumps(obj, sort_keys=True))


def resources_of(section):
    """Cluster-neutral resources (runtime in minutes, mem_mb) of a config section."""
    res = config[section]["resources"]
    return {"runtime": res["runtime"], "mem_mb": res["mem_mb"]}


def attack_epsilon(wildcards):
    """The configured epsilon whose file tag is the wildcard; unknown ones are a clear error."""
    if wildcards.attack not in ATTACKS:
        raise WorkflowError(f"attacks.{wildcards.attack}: no such attack in the configuration (have {sorted(ATTACKS)})")
    for eps in ATTACKS[wildcards.attack]["epsilons"]:
        if eps_tag(eps) == wildcards.eps:
            return float(eps)
    raise WorkflowError(
        f"attacks.{wildcards.attack}.epsilons: no epsilon {wildcards.eps} (configured: {ATTACKS[wildcards.attack]['epsilons']})"
    )


def attack_job_params(wildcards, split=None):
    """Everything that determines one attack file; the other epsilons of the list are not in it,
    so adding an epsilon does not re-run the files of the existing ones."""
    spec = ATTACKS.get(wildcards.attack)
    if spec is None:
        raise WorkflowError(f"attacks.{wildcards.attack}: no such attack in the configuration (have {sorted(ATTACKS)})")
    return canonical({
        "class": spec["class"],
        "norm": spec["norm"],
        "params": spec.get("params", {}),
        "epsilon": attack_epsilon(wildcards),
        "images": config["attack_defaults"]["images"][split or wildcards.split],
        "seed": config["seed"],
    })
