"""Every key of the config schema, changed alone on a finished smoke run: a key that changes results
schedules its stage; a runtime-only key (device, evaluation batch sizes, resources, threads) schedules
nothing. Settings reach jobs through rule params only, so this holds by construction; the test keeps it so."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from advdefense.plan.names import file_sha256, is_runtime_key
from conftest import REPO

pytestmark = pytest.mark.slow

NOTHING = frozenset()  # the change must schedule no job at all


class Refused(str):
    """The change alone is invalid for the smoke run: the dry run must stop with an error naming the key."""


# key -> (new value, expectation). Expectation: a rule name (that stage must be scheduled), NOTHING, or a
# frozenset of the only rules allowed (keys that add or remove targets: the aggregates that list them).
# Runtime-only keys are not listed: each is changed and must schedule nothing.
RESULT_KEYS = {
    "seed": (1, "dataset"),
    "seeds": ([0, 1], "dataset"),  # one run per seed, each from its own dataset file
    "dataset.name": ("other-name", "dataset"),
    "dataset.source": ("cifar10", "dataset"),
    "dataset.root": ("elsewhere", NOTHING),  # only read by the cifar10 source; smoke is synthetic
    "dataset.path": ("elsewhere", NOTHING),  # only read by the local source
    "dataset.labels": ("coarse", Refused("dataset.labels")),  # coarse labels exist only for CIFAR-100
    "dataset.train_size": (1500, "dataset"),
    "dataset.test_size": (500, "dataset"),
    "dataset.synthetic.train_images": (3500, "dataset"),
    "dataset.calibration_size": (300, "dataset"),
    "dataset.synthetic.test_images": (600, "dataset"),
    "dataset.synthetic.noise": (0.06, "dataset"),
    "classifier.source": ("checkpoint", "import_classifier"),
    "classifier.checkpoint.path": ("elsewhere.pt", NOTHING),  # only read with source: checkpoint
    "classifier.checkpoint.builder": ("models:build", NOTHING),
    "classifier.checkpoint.sha256": ("0" * 64, NOTHING),
    "classifier.robustbench.name": ("Wong2020Fast", NOTHING),  # only read with source: robustbench
    "classifier.robustbench.threat_model": ("L2", NOTHING),
    "classifier.robustbench.model_dir": ("elsewhere", NOTHING),
    "classifier.robustbench.sha256": ("0" * 64, NOTHING),
    "classifier.checkpoint.mean": ([0.5, 0.5, 0.5], NOTHING),
    "classifier.checkpoint.std": ([0.25, 0.25, 0.25], NOTHING),
    "classifier.training": ("pgd_at", "train_classifier"),
    # a method's block re-runs only that method's classifiers: the smoke run trains a standard one
    "classifier.pgd_at.epsilon": (0.02, NOTHING),
    "classifier.pgd_at.steps": (3, NOTHING),
    "classifier.pgd_at.step_size": (0.01, NOTHING),
    "classifier.trades.epsilon": (0.02, NOTHING),
    "classifier.trades.steps": (3, NOTHING),
    "classifier.trades.step_size": (0.01, NOTHING),
    "classifier.trades.beta": (1.0, NOTHING),
    "classifier.fast_at.epsilon": (0.02, NOTHING),
    "classifier.fast_at.step_size": (0.01, NOTHING),
    "classifier.depth": (14, "train_classifier"),
    "classifier.width": (8, "train_classifier"),
    "classifier.epochs": (9, "train_classifier"),
    "classifier.batch_size": (65, "train_classifier"),
    "classifier.precision": ("bfloat16", "train_classifier"),
    "classifier.optimizer.lr": (0.04, "train_classifier"),
    "classifier.optimizer.momentum": (0.8, "train_classifier"),
    "classifier.optimizer.nesterov": (False, "train_classifier"),
    "classifier.optimizer.weight_decay": (0.001, "train_classifier"),
    "classifier.schedule.name": ("constant", "train_classifier"),
    "classifier.schedule.warmup_epochs": (1, "train_classifier"),
    "classifier.schedule.milestones": ([2, 4], "train_classifier"),
    "classifier.schedule.gamma": (0.2, "train_classifier"),
    "classifier.augment.crop_padding": (2, "train_classifier"),
    "classifier.augment.flip": (False, "train_classifier"),
    "attack_defaults.batch_size": (50, "attack"),  # the batches' random starts: a result key
    "attack_defaults.images.train": (400, "attack"),
    "attack_defaults.images.test": (400, "attack"),
    "attack_defaults.splits": (["test", "train"], NOTHING),  # the same splits in another order
    "attack_defaults.shards": (2, "merge_attack_shards"),  # the same files, made by shard jobs and merged
    "attacks": ({"bim": {"class": "LinfBasicIterativeAttack", "norm": "linf", "epsilons": [0.03]}}, "attack"),
    "flow.source": ("pretrained", "import_flow"),
    "flow.pretrained.checkpoint": ("elsewhere.pt", NOTHING),  # only read with source: pretrained
    "flow.pretrained.hparams": ("elsewhere.json", NOTHING),
    "flow.hidden_channels": (16, "train_flow"),
    "flow.K": (3, "train_flow"),
    "flow.L": (2, "train_flow"),
    "flow.actnorm_scale": (0.9, "train_flow"),
    "flow.permutation": ("shuffle", "train_flow"),
    "flow.coupling": ("additive", "train_flow"),
    "flow.learn_top": (False, "train_flow"),
    "flow.epochs": (4, "train_flow"),
    "flow.batch_size": (65, "train_flow"),
    "flow.init_images": (300, "train_flow"),
    "flow.optimizer.lr": (0.001, "train_flow"),
    "flow.optimizer.warmup_epochs": (2, "train_flow"),
    "flow.optimizer.max_grad_norm": (None, "train_flow"),
    # no latents: only the figure that listed the flow's training curve is redrawn (detection needs latents)
    "latents.enabled": (False, frozenset({"figure_training", "reproduction_page", "corruption_tables"})),
    "autoencoder.widths": ([16, 32], "train_autoencoder"),
    "autoencoder.kernel": (5, "train_autoencoder"),
    "autoencoder.activation": ("elu", "train_autoencoder"),
    "autoencoder.batch_norm": (True, "train_autoencoder"),
    "autoencoder.noise_std": (0.05, "train_autoencoder"),
    "autoencoder.epochs": (21, "train_autoencoder"),
    "autoencoder.batch_size": (65, "train_autoencoder"),
    "autoencoder.optimizer.lr": (0.001, "train_autoencoder"),
    "autoencoder.optimizer.weight_decay": (0.0001, "train_autoencoder"),
    "purification.enabled": (
        False,
        frozenset({"figure_accuracy_eps", "reproduction_page", "corruption_accuracy", "corruption_tables"}),
    ),
    "purification.splits": (["train", "test"], "purify_attack"),
    # fewer purifiers: only the aggregates that list their files re-run
    "purification.methods": (
        ["autoencoder", "median"],
        frozenset(
            {"table3", "figure_accuracy_eps", "reproduction_page", "corruption_accuracy", "corruption_tables"}
        ),
    ),
    "purification.jpeg.quality": (50, "purify_attack"),
    "purification.bit_depth.bits": (4, "purify_attack"),
    "purification.median.size": (3, "purify_attack"),
    # the sweep (issue 41): points add their own autoencoders and purifier jobs, the sweep table and the page only
    "purification.autoencoder_sweep.points": (
        {"p": {"widths": [8, 2], "epochs": 1}},
        frozenset(
            {
                "train_autoencoder_point",
                "purify_clean",
                "purify_attack",
                "adaptive_attack",
                "autoencoder_sweep",
                "reproduction_page",
            }
        ),
    ),
    "purification.autoencoder_sweep.attacks": (["fgsm"], NOTHING),  # the smoke run has no points
    "purification.autoencoder_sweep.epsilon": (0.05, NOTHING),
    "purification.autoencoder_sweep.adaptive": (None, NOTHING),
    "purification.adaptive.eot_samples": (5, NOTHING),  # no registered purifier is random
    "purification.adaptive.enabled": (False, "table3"),
    "purification.adaptive.images": (50, "adaptive_attack"),
    "purification.adaptive.restarts": (3, "adaptive_attack"),
    "purification.adaptive.params": ({"pgd": {"steps": 11}}, "adaptive_attack"),
    "tables.table3.attacks": (["pgd"], "table3"),
    "detection.enabled": (False, frozenset({"reproduction_page", "corruption_tables"})),  # fewer rows
    "detection.methods": (["latent_mlp", "pca"], "detection_tables"),
    "detection.attacks": (["fgsm", "pgd"], "detect"),  # the detectors learn fewer attacks
    "detection.latent_mlp.widths": ([128, 64, 32, 16], "detect"),
    "detection.latent_mlp.dropout": (0.1, "detect"),
    "detection.latent_mlp.epochs": (31, "detect"),
    "detection.latent_mlp.batch_size": (65, "detect"),
    "detection.latent_mlp.lr": (0.002, "detect"),
    "detection.latent_mlp.weight_decay": (0.001, "detect"),
    "detection.pixel_cnn.width": (8, "detect"),
    "detection.pixel_cnn.epochs": (11, "detect"),
    "detection.pixel_cnn.batch_size": (65, "detect"),
    "detection.pixel_cnn.lr": (0.002, "detect"),
    "detection.pixel_cnn.weight_decay": (0.001, "detect"),
    "detection.pca.skip_components": (10, "detect"),
    "detection.lid.k": (10, "detect"),
    "detection.lid.reference": (50, "detect"),
    "detection.magnet_jsd.temperature": (40.0, "detect"),
    "detection.feature_squeezing.bit_depth": (4, "detect"),
    "detection.feature_squeezing.median_size": (3, "detect"),
    "detection.fprs": ([0.02, 0.05], "detect"),
    "detection.controls": (["sign"], "detect"),
    "detection.aware.enabled": (False, "detect"),
    "detection.aware.methods": (["latent_mlp"], "detect"),
    "detection.aware.images": (40, "detect"),
    "detection.aware.epsilons": ([0.03], "detect"),
    "detection.aware.fpr": (0.01, "detect"),
    "detection.aware.steps": (21, "detect"),
    "detection.aware.restarts": (2, "detect"),
    "detection.aware.lambdas": ([0, 5], "detect"),
    "detection.aware.step_factor": (2.0, "detect"),
    "detection.aware.kappa": (0.2, "detect"),
    "detection.aware.batch_size": (40, "detect"),
    "detection.aware.sanity_epsilon": (0.5, "detect"),
    "detection.aware.sanity_images": (10, "detect"),
    "detection.aware.sanity_steps": (60, "detect"),
    "detection.aware.square_queries": (150, "detect"),
    "detection.aware.step_rules": (["sign"], "detect"),
    "detection.aware.objectives": (["penalty"], "detect"),
    "detection.mmd.enabled": (False, frozenset({"detection_tables", "reproduction_page"})),
    "detection.mmd.batch_sizes": ([5, 10], "mmd_test"),
    "detection.mmd.trials": (21, "mmd_test"),
    "detection.mmd.permutations": (101, "mmd_test"),
    "detection.mmd.alpha": (0.01, "mmd_test"),
    "detection.mmd.table_batch_size": (
        5,
        frozenset({"detection_tables", "reproduction_page"}),
    ),  # a table choice, not the test's
    "corruptions.names": (["gaussian_noise", "fog"], "corrupt"),  # fog's file is new; the tables gather it
    "corruptions.severities": ([1, 3], "corrupt"),
    "corruptions.images": (100, "corrupt"),  # (the smoke config's 200)
}

# changed together with the key, where the key alone would make an invalid config
COMPANIONS = {
    "purification.autoencoder_sweep.points": {"purification.autoencoder_sweep.epsilon": 0.03},  # the smoke's
    "classifier.source": {
        "classifier.checkpoint.path": "{tmp}/classifier.pt",
        "classifier.checkpoint.sha256": "{sha}",
    },
    "latents.enabled": {"detection.enabled": False},
    "flow.source": {
        "flow.pretrained.checkpoint": "{tmp}/glow.pt",
        "flow.pretrained.hparams": "{tmp}/hparams.json",
    },
}

RUNTIME_VALUES = {
    "device": "auto",
    "container": "docker://registry.example.org/advdefense:0.1.0",
}  # other runtime keys: numbers, changed by +1


def schema_keys() -> list[str]:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

    def walk(node, prefix):
        props = node.get("properties")
        if not props:
            yield prefix
            return
        for name, sub in props.items():
            yield from walk(sub, f"{prefix}.{name}" if prefix else name)

    return list(walk(schema, ""))


def _set(cfg: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value


def _get(cfg: dict, key: str):
    node = cfg
    for p in key.split("."):
        node = node[p]
    return node


def test_every_schema_key_is_classified():
    keys = schema_keys()
    unclassified = [k for k in keys if not is_runtime_key(k) and k not in RESULT_KEYS]
    assert not unclassified, f"schema keys without an expectation in RESULT_KEYS: {unclassified}"
    assert not [k for k in RESULT_KEYS if k not in keys], "RESULT_KEYS names keys the schema does not have"
    assert not [k for k in RESULT_KEYS if is_runtime_key(k)]


def test_result_keys_rerun_their_stage_and_runtime_keys_nothing(smoke_run, tmp_path):
    from advdefense.config import load_yaml, validate_config

    run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    (tmp_path / "glow.pt").write_bytes(b"")
    torch.jit.save(
        torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10))),
        str(tmp_path / "classifier.pt"),
    )
    sha = file_sha256(tmp_path / "classifier.pt")
    (tmp_path / "hparams.json").write_text("{}")
    base = validate_config(load_yaml(run / "smoke.yaml"))  # every key present (schema defaults filled in)
    configs, expectations = [], {}
    for i, key in enumerate(schema_keys()):
        cfg = copy.deepcopy(base)
        if is_runtime_key(key):
            old = _get(cfg, key)
            value, expected = RUNTIME_VALUES.get(key, old + 1 if isinstance(old, int) else old), NOTHING
        else:
            value, expected = RESULT_KEYS[key]
        if key == "attacks":
            value = {**cfg["attacks"], **value}
        _set(cfg, key, value)
        for other, v in COMPANIONS.get(key, {}).items():
            _set(cfg, other, v.format(tmp=tmp_path, sha=sha) if isinstance(v, str) else v)
        path = tmp_path / f"k{i:03d}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        configs.append(path)
        expectations[str(path)] = (key, value, expected)
    # the unchanged config first: it must schedule nothing
    unchanged = tmp_path / "unchanged.yaml"
    unchanged.write_text(yaml.safe_dump(base, sort_keys=False))
    # the same attacks listed in another order: only what shows them in that order (tables, figures) is redone
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(
        yaml.safe_dump({**base, "attacks": dict(reversed(list(base["attacks"].items())))}, sort_keys=False)
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests/dryrun_probe.py"),
            str(REPO / "Snakefile"),
            str(run),
            str(unchanged),
            str(reordered),
            *map(str, configs),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # {config: [[rule, threads], ...]} -> {config: [rule, ...]}; an error stays its message
    scheduled = {
        config: jobs if isinstance(jobs, str) else [rule for rule, _threads in jobs]
        for config, jobs in json.loads(proc.stdout.strip().splitlines()[-1]).items()
    }
    assert scheduled.pop(str(unchanged)) == []
    assert set(scheduled.pop(str(reordered))) <= {
        "table3",
        "detection_tables",
        "figure_examples",
        "attack_summary",
        "figure_accuracy_eps",
        "figure_detection",
        "reproduction_page",  # the page gathers the tables
        "all",
    }
    wrong = []
    for path, rules in scheduled.items():
        key, value, expected = expectations[path]
        if isinstance(expected, Refused):
            if not (isinstance(rules, str) and expected in rules):
                wrong.append(f"{key} = {value!r}: expected an error naming {expected}, got {rules}")
        elif isinstance(rules, str):
            wrong.append(f"{key} = {value!r}: {rules}")
        elif isinstance(expected, str) and expected not in rules:
            wrong.append(f"{key} = {value!r}: expected {expected} to run, scheduled {sorted(set(rules))}")
        elif isinstance(expected, frozenset) and not set(rules) <= expected | {"all"}:
            wrong.append(
                f"{key} = {value!r}: expected only {sorted(expected) or 'nothing'}, "
                f"scheduled {sorted(set(rules))}"
            )
    assert not wrong, "\n".join(wrong)
    assert len(scheduled) == len(schema_keys())
