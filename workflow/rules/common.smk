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


def all_targets():
    targets = [dataset_file(), classifier_file(name="metrics.json")]
    if ATTACKS:
        targets.append(attack_summary_file())
    if config["latents"]["enabled"]:
        targets.append(f"results/flow/{DATASET}/metrics.json")
        targets += latent_files()
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


def attack_job_params(wildcards):
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
        "images": config["attack_defaults"]["images"][wildcards.split],
        "seed": config["seed"],
    })
