import copy

import pytest

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.plan.names import eps_tag
from advdefense.runtime import resolve_device
from conftest import REPO


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
def test_shipped_configs_validate_and_get_defaults(name):
    cfg = validate_config(load_yaml(REPO / "config" / name))
    assert cfg["classifier"]["depth"] in (8, 20)
    assert cfg["classifier"]["augment"] == {"crop_padding": 4, "flip": True}
    float_attacks = {name for name, spec in cfg["attacks"].items() if spec["quantize"] == "float"}
    assert float_attacks >= {"fgsm", "pgd", "deepfool"}
    rounded = {name: spec for name, spec in cfg["attacks"].items() if spec["quantize"] == "8bit"}
    assert rounded and all(name.endswith("_8bit") and name[:-5] in float_attacks for name in rounded)
    assert cfg["dataset"]["calibration_size"] >= 100  # enough for thresholds at 1 % FPR


def test_paper_config_has_paper_settings():
    cfg = validate_config(load_yaml(REPO / "config" / "config.yaml"))
    assert cfg["dataset"]["source"] == "cifar10" and cfg["dataset"]["train_size"] is None
    assert cfg["classifier"]["depth"] == 20 and cfg["classifier"]["epochs"] == 200
    assert cfg["classifier"]["batch_size"] == 128
    attacks = cfg["attacks"]
    assert all(
        0.02 in spec["epsilons"] for spec in attacks.values() if spec["norm"] == "linf"
    )  # the paper's eps
    sweep = [1 / 255, 2 / 255, 4 / 255, 0.02, 6 / 255, 8 / 255]  # and today's L-inf sweep, 1/255 ... 8/255
    for name in ("fgsm", "pgd", "autoattack"):
        assert attacks[name]["epsilons"] == pytest.approx(sweep, abs=5e-9), name
    assert (
        attacks["autoattack"]["class"] == "AutoAttack"
        and attacks["autoattack"]["params"]["version"] == "standard"
    )
    assert {attacks[n]["norm"] for n in ("pgd_l2", "autoattack_l2")} == {"l2"}  # an L2 threat model
    assert (
        attacks["pgd"]["params"]["steps"] >= 100 and attacks["pgd"]["restarts"] > 1
    )  # PGD at today's strength
    assert cfg["attack_defaults"]["images"] == {"train": 5000, "test": 5000}


def test_defaults_fill_an_empty_config():
    cfg = validate_config({})
    assert cfg["device"] == "auto" and cfg["classifier"]["optimizer"]["lr"] == 0.1
    assert cfg["attacks"] == {}


FGSM = {"fgsm": {"class": "FGSM", "norm": "linf", "epsilons": [0.02]}}
BAD = [
    ({"classifier": {"epochs": 0}}, r"classifier\.epochs: 0 is less than the minimum of 1"),
    ({"classifier": {"epochs": -3}}, r"classifier\.epochs"),
    ({"classifier": {"batch_size": 0}}, r"classifier\.batch_size"),
    (
        {"classifier": {"optimizer": {"lr": 0}}},
        r"classifier\.optimizer\.lr: 0 is less than or equal to the minimum",
    ),
    ({"classifier": {"optimizer": {"lr": -0.1}}}, r"classifier\.optimizer\.lr"),
    ({"classifier": {"depth": 21}}, r"classifier\.depth: 21 is not of the form 6n\+2"),
    ({"device": "tpu"}, r"device: 'tpu' does not match"),
    ({"dataset": {"source": "imagenet"}}, r"dataset\.source: 'imagenet' is not one of"),
    ({"dataset": {"source": "local"}}, r"dataset\.path: required when dataset\.source is 'local'"),
    (
        {"dataset": {"source": "local", "path": "/no/such/dir"}},
        r"dataset\.path: directory /no/such/dir does not exist",
    ),
    ({"dataset": {"train_size": 0}}, r"dataset\.train_size"),
    ({"classifer": {}}, r"Additional properties are not allowed \('classifer' was unexpected\)"),
    ({"classifier": {"schedule": {"name": "exponential"}}}, r"classifier\.schedule\.name"),
    (
        {"flow": {"source": "pretrained"}},
        r"flow\.pretrained\.checkpoint: required when flow\.source is 'pretrained'",
    ),
    ({"flow": {"K": 0}}, r"flow\.K: 0 is less than the minimum of 1"),
    ({"flow": {"coupling": "spline"}}, r"flow\.coupling: 'spline' is not one of"),
    (
        {"attacks": {"clean": {"class": "FGSM", "norm": "linf", "epsilons": [0.1]}}},
        r"attacks\.clean: 'clean' is reserved",
    ),
    # detection (issue 13): the registry, the calibration split, thresholds, the detector-aware attack
    (
        {"attacks": FGSM, "detection": {"methods": ["latent_mlp", "kernel_density"]}},
        r"detection\.methods: unknown detector 'kernel_density' \(registered: latent_mlp, pixel_cnn, pca, magnet, magnet_jsd",
    ),
    (
        {"attacks": FGSM, "dataset": {"calibration_size": 0}},
        r"dataset\.calibration_size: detection needs a calibration",
    ),
    (
        {"attacks": FGSM, "dataset": {"calibration_size": 50000}},
        r"dataset\.calibration_size: 50000 calibration images are held out of the 50000 training images",
    ),
    ({"attacks": FGSM, "dataset": {"calibration_size": 50}}, r"detection\.fprs: 0\.01 is below 1/50"),
    (
        {"attacks": FGSM, "detection": {"aware": {"methods": ["offgrid"]}}},
        r"detection\.aware\.methods: 'offgrid' is not a configured detector with a differentiable score",
    ),
    (
        {"attacks": FGSM, "detection": {"aware": {"fpr": 0.1}}},
        r"detection\.aware\.fpr: 0\.1 is not one of detection\.fprs",
    ),
    (
        {"attacks": {"p": {"class": "L2PGD", "norm": "l2", "quantize": "8bit", "epsilons": [0.5]}}},
        r"attacks\.p\.quantize: 8bit rounding is kept inside an L-inf ball only",
    ),
    (
        {"tables": {"resources": {"threads": 2}}},
        r"tables\.resources: moved to light_jobs\.resources",
    ),
    (
        {"attacks": FGSM, "purification": {"adaptive": {"params": {"pgd": {"steps": 5}}}}},
        r"purification\.adaptive\.params\.pgd: no attack 'pgd' is configured",
    ),
    (
        {"attacks": FGSM, "purification": {"adaptive": {"params": {"fgsm": {"steps": 5}}}}},
        r"purification\.adaptive\.params\.fgsm\.params: steps not accepted by foolbox\.attacks\.FGSM",
    ),
]


@pytest.mark.parametrize("patch,message", BAD)
def test_bad_values_name_their_key(patch, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(patch)


def test_unknown_or_unavailable_device(monkeypatch):
    import torch

    with pytest.raises(ConfigError, match="device: unknown device 'gpu0'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device: 'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1")
    assert resolve_device("auto").type == "cpu"
    assert resolve_device("cpu").type == "cpu"


ATTACK_OK = {"class": "LinfPGD", "norm": "linf", "params": {"steps": 5}, "epsilons": [0.02]}
BAD_ATTACKS = [
    (
        {"class": "NoSuchAttack"},
        r"attacks\.a\.class: 'NoSuchAttack' is neither a class of an attack family \(AutoAttack\) nor a Foolbox",
    ),
    (
        {"class": "AutoAttack", "params": {"version": "fast"}},
        r"attacks\.a\.params\.version: 'fast' is not an AutoAttack version \(standard, plus, rand, custom\)",
    ),
    (
        {"class": "AutoAttack", "params": {"version": "custom", "attacks": ["apgd-ce", "cw"]}},
        r"attacks\.a\.params\.attacks: 'cw' not an AutoAttack sub-attack \(known: apgd-ce",
    ),
    (
        {"class": "AutoAttack", "params": {"version": "custom", "attacks": ["apgd-ce", "apgd-ce"]}},
        r"attacks\.a\.params\.attacks: \['apgd-ce', 'apgd-ce'\] names a sub-attack twice",
    ),
    (
        {"class": "AutoAttack", "params": {"version": "custom"}},
        r"attacks\.a\.params\.attacks: version custom needs a non-empty list of sub-attacks",
    ),
    (
        {"class": "AutoAttack", "params": {"attacks": ["square"]}},
        r"attacks\.a\.params\.attacks: only version custom takes a list of sub-attacks",
    ),
    (
        {"class": "AutoAttack", "params": {"n_iter": 10}},
        r"attacks\.a\.params: n_iter not accepted by AutoAttack",
    ),
    (
        {"epsilons": [0.02, 0.01]},
        r"attacks\.a\.epsilons: 0\.01 is smaller than the epsilon before it \(0\.02\); a sweep "
        r"lists each epsilon once, increasing",
    ),
    ({"epsilons": [0.01, 0.02, 0.02]}, r"attacks\.a\.epsilons: .*non-unique"),
    ({"restarts": 0}, r"attacks\.a\.restarts: 0 is less than the minimum of 1"),
    ({"params": {"stepz": 5}}, r"attacks\.a\.params: stepz not accepted by foolbox\.attacks\.LinfPGD"),
    (
        {"norm": "l2"},
        r"attacks\.a\.norm: 'l2' does not match foolbox\.attacks\.LinfPGD, which bounds the Linf norm",
    ),
    ({"norm": "l1"}, r"attacks\.a\.norm: 'l1' is not one of"),
    ({"epsilons": []}, r"attacks\.a\.epsilons: \[\] should be non-empty"),
    ({"epsilons": [0]}, r"attacks\.a\.epsilons\.0: 0 is less than or equal to the minimum of 0"),
    ({"epsilons": [-0.1]}, r"attacks\.a\.epsilons\.0"),
    ({"epsilons": ["big"]}, r"attacks\.a\.epsilons\.0: 'big' is not of type 'number'"),
    ({"params": {"steps": "many"}}, r"attacks\.a\.params"),
    (
        {"splits": ["train"]},
        r"attacks\.a\.splits: \['train'\] leaves out test, the split every table and figure",
    ),
    ({"splits": []}, r"attacks\.a\.splits: \[\] should be non-empty"),
    ({"splits": ["test", "test"]}, r"attacks\.a\.splits: .*non-unique"),
    ({"splits": ["calibration"]}, r"attacks\.a\.splits\.0: 'calibration' is not one of"),
]


@pytest.mark.parametrize("patch,message", BAD_ATTACKS)
def test_bad_attack_entries_name_their_key(patch, message):
    spec = {**copy.deepcopy(ATTACK_OK), **patch}
    with pytest.raises(ConfigError, match=message):
        validate_config({"attacks": {"a": spec}})


def test_attacks_run_on_their_own_splits_and_detection_on_its_attacks():
    """`attacks.<name>.splits` (default attack_defaults.splits) and `detection.attacks` (default: all): an attack that
    runs on test only can be measured but not learned by a detector; errors name the key to change."""
    from advdefense.plan.decisions import attacked_splits, detection_attacks

    attacks = {
        "a": copy.deepcopy(ATTACK_OK),
        "b": {**copy.deepcopy(ATTACK_OK), "splits": ["test"]},
        "c": copy.deepcopy(ATTACK_OK),
    }
    cfg = validate_config({"attacks": attacks, "detection": {"attacks": ["c", "a"]}})
    assert [cfg["attacks"][n]["splits"] for n in "abc"] == [["train", "test"], ["test"], ["train", "test"]]
    assert detection_attacks(cfg) == ["a", "c"] and attacked_splits(cfg) == [
        "train",
        "test",
    ]  # in config order
    with pytest.raises(
        ConfigError,
        match=r"attacks\.b\.splits: \['test'\], but detection trains on attacked train "
        r"images .* leave b out of detection\.attacks",
    ):
        validate_config({"attacks": attacks})
    with pytest.raises(ConfigError, match=r"detection\.attacks: 'd' is not a configured attack"):
        validate_config({"attacks": attacks, "detection": {"attacks": ["a", "d"]}})
    with pytest.raises(ConfigError, match=r"detection\.attacks: \[\] should be non-empty"):
        validate_config({"attacks": attacks, "detection": {"attacks": []}})
    with pytest.raises(
        ConfigError,
        match=r"attack_defaults\.splits: \['train'\] leaves out test.*\(the splits of "
        r"attacks\.a\)",
    ):
        validate_config(
            {"attacks": {"a": copy.deepcopy(ATTACK_OK)}, "attack_defaults": {"splits": ["train"]}}
        )
    only_test = {"attacks": {"b": attacks["b"]}, "detection": {"enabled": False}}
    assert attacked_splits(validate_config(only_test)) == ["test"]
    with pytest.raises(ConfigError, match=r"purification\.splits: 'train' is not attacked"):
        validate_config({**only_test, "purification": {"splits": ["train"]}})


def test_attack_without_class_is_refused():
    with pytest.raises(ConfigError, match=r"attacks\.a: 'class' is a required property"):
        validate_config({"attacks": {"a": {"norm": "linf", "epsilons": [0.1]}}})


def test_eps_tag_is_stable_and_readable():
    assert eps_tag(0.02) == "0.02"
    assert eps_tag(8 / 255) == "0.03137255"
    assert eps_tag(0.5) == "0.5" and eps_tag(1) == "1"
    assert eps_tag(1e-5) == "0.00001"


def test_the_aware_attack_fpr_must_be_a_calibrated_one(smoke_config):
    from advdefense.plan.detector_specs import aware_fpr

    smoke_config["detection"]["aware"]["fpr"] = 0.02  # fprs: 0.01, 0.05
    with pytest.raises(ConfigError, match=r"detection.aware.fpr: 0.02 is not one of detection.fprs"):
        validate_config(smoke_config)
    assert aware_fpr({"fpr": 0.05}, [0.01, 0.05]) == 0.05  # the same check the detect job makes
