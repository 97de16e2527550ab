"""RobustBench in and out: a zoo model imported through the `robustbench` package (`classifier.source:
robustbench`), and a run's AutoAttack results written as the leaderboard's model_info entries.

No network here: the tests write a zoo-layout checkpoint of a RobustBench architecture (Ding2020MMA, a
WideResNet-28-4, randomly initialised) into `model_dir` themselves, as a user without network would place the
real one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch
import yaml

from advdefense.config import ConfigError, check_config_files, load_yaml
from advdefense.data import make_synthetic, read_dataset_h5, write_dataset_h5
from advdefense.plan.names import file_sha256, robustbench_zoo_file
from conftest import REPO, run_snakemake

robustbench_zoo = pytest.importorskip("advdefense.models.robustbench_zoo")
NAME = "Ding2020MMA"  # the smallest single-checkpoint CIFAR-10 Linf model of the zoo (5.8 M parameters)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A model_dir holding Ding2020MMA's checkpoint in RobustBench's layout, the model itself, a data set."""
    try:
        robustbench_zoo.import_robustbench()
    except ConfigError as exc:  # the extra is not installed: the package's own tests cannot run
        pytest.skip(str(exc))
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    root = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    model = model_dicts[BenchmarkDataset.cifar_10][ThreatModel.Linf][NAME]["model"]().eval()
    checkpoint = robustbench_zoo_file(root / "models", "cifar10", "Linf", NAME)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict()}, checkpoint)  # as the zoo's files hold it
    data = root / "data.h5"
    write_dataset_h5(make_synthetic(40, 48, seed=2), data)
    return {"root": root, "model_dir": root / "models", "file": checkpoint, "model": model, "data": data}


def _settings(zoo, **changes):
    return {
        "name": NAME,
        "threat_model": "Linf",
        "model_dir": str(zoo["model_dir"]),
        "sha256": file_sha256(zoo["file"]),
        **changes,
    }


def _import(zoo, tmp_path, **changes):
    from advdefense.classifier import import_robustbench_classifier

    out = (tmp_path / "model.pt", tmp_path / "metrics.json")
    return import_robustbench_classifier(
        _settings(zoo, **changes), "cifar10", zoo["data"], *out, device="cpu", eval_batch_size=16
    )


def test_zoo_model_is_imported_exactly(zoo, tmp_path):
    """The stored classifier (the zoo's model exported with torch.export) gives the zoo model's logits on the data
    set's test images, which the metrics score; no later job needs the package."""
    from advdefense.classifier import load_classifier

    metrics = _import(zoo, tmp_path)
    assert metrics["source"] == "robustbench" and metrics["robustbench_name"] == NAME
    assert metrics["checkpoint_sha256"] == file_sha256(zoo["file"]) and metrics["downloaded"] is False
    assert metrics["architecture"] == "Ding2020MMANet" and metrics["parameters"] == sum(
        p.numel() for p in zoo["model"].parameters()
    )
    stored = load_classifier(tmp_path / "model.pt")
    assert stored.arch["name"] == "external" and stored.arch["source_format"] == "robustbench"
    assert stored.arch["format"] == "export" and metrics["stored_as"].startswith("export")
    test = read_dataset_h5(zoo["data"]).test
    x = torch.from_numpy(test.images).float() / 255
    with torch.no_grad():
        ours, theirs = stored(x), zoo["model"](x)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)
    labels = torch.from_numpy(test.labels)
    assert metrics["test_accuracy"] == pytest.approx(float((theirs.argmax(1) == labels).float().mean()))
    # its features (issue 44): read from the stored program's graph, equal to the zoo model's own penultimate layer
    from advdefense.models.features import FeatureReader

    with torch.no_grad():
        assert torch.allclose(FeatureReader(stored)(x[:8]), FeatureReader(zoo["model"])(x[:8]), atol=1e-4)


def test_zoo_bad_inputs_name_their_cause(zoo, tmp_path, monkeypatch):
    with pytest.raises(
        ConfigError, match=r"classifier\.robustbench\.name: the installed robustbench does not know"
    ):
        _import(zoo, tmp_path, name="Ding2020MMAX")
    # a model the zoo has for Linf only
    with pytest.raises(ConfigError, match=r"does not know 'Wong2020Fast' for cifar10 / L2"):
        _import(zoo, tmp_path, name="Wong2020Fast", threat_model="L2")
    with pytest.raises(ConfigError, match=r"threat_model: 'Linfinity' is not a RobustBench threat model"):
        _import(zoo, tmp_path, threat_model="Linfinity")
    with pytest.raises(
        ConfigError, match=rf"sha256: {zoo['file']} has sha256 [0-9a-f]{{64}}, but the config pins"
    ):
        _import(zoo, tmp_path, sha256="1" * 64)
    assert not (tmp_path / "model.pt").exists()  # nothing was stored

    # absent, and no network: the error names the file to place there, and no partial file is left
    import robustbench.utils

    def no_network(file_id, path):
        path.write_bytes(b"<html>partial")  # what a broken download leaves
        raise ConnectionError("no route to drive.google.com")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", no_network)
    missing = robustbench_zoo_file(zoo["model_dir"], "cifar10", "Linf", "Wong2020Fast")
    with pytest.raises(ConfigError, match=rf"place the file Wong2020Fast\.pt .* at {missing}"):
        _import(zoo, tmp_path, name="Wong2020Fast", sha256="2" * 64)
    assert not missing.exists()


def test_a_zoo_model_that_outputs_probabilities_is_refused(zoo, tmp_path, monkeypatch):
    import robustbench.utils

    def softmaxed(*args, **kwargs):
        return torch.nn.Sequential(zoo["model"], torch.nn.Softmax(1)).eval()

    monkeypatch.setattr(robustbench.utils, "load_model", softmaxed)
    with pytest.raises(ConfigError, match="outputs probabilities"):
        _import(zoo, tmp_path)


def test_zoo_checkpoint_loads_weights_only(zoo, tmp_path):
    """A checkpoint that holds code (a pickled object, not tensors) is refused by the load, not run."""
    evil = tmp_path / "evil"
    path = robustbench_zoo_file(evil, "cifar10", "Linf", NAME)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": zoo["model"].state_dict(), "hook": argparse.Namespace(run="code")}, path)
    with pytest.raises(ConfigError, match="could not load"):
        _import(zoo, tmp_path, model_dir=str(evil), sha256=file_sha256(path))


def test_config_check_of_a_robustbench_source(zoo, tmp_path):
    cfg = load_yaml(REPO / "config/smoke.yaml")
    for missing in ("name", "sha256"):
        cfg["classifier"] = {"source": "robustbench", "robustbench": {**_settings(zoo), missing: None}}
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        with pytest.raises(ConfigError, match=rf"classifier\.robustbench\.{missing}: required"):
            check_config_files([tmp_path / "c.yaml"])
    cfg["classifier"] = {"source": "robustbench", "robustbench": _settings(zoo, sha256="3" * 64)}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"classifier\.robustbench\.sha256: .* has sha256"):
        check_config_files([tmp_path / "c.yaml"])


@pytest.mark.slow
def test_round_trip_zoo_checkpoint_to_attack_to_model_info(zoo, tmp_path):
    """Zoo-layout checkpoint -> import_robustbench -> AutoAttack at 8/255 on the test split -> the model_info
    entry, in one snakemake run; its fields are RobustBench's own and its numbers those of the attack file."""
    from robustbench.utils import ModelInfo

    from advdefense.attack_files import open_attack_file, summarize_attack_file

    cfg = load_yaml(REPO / "config/smoke.yaml")
    cfg["dataset"]["synthetic"] = {"train_images": 400, "test_images": 60, "noise": 0.05}
    cfg["dataset"]["calibration_size"] = 0
    cfg["classifier"] = {"source": "robustbench", "robustbench": _settings(zoo), "eval_batch_size": 60}
    cfg["attack_defaults"] = {**cfg["attack_defaults"], "images": {"train": 20, "test": 20}, "batch_size": 20}
    cfg["attacks"] = {
        "autoattack": {
            "class": "AutoAttack",
            "norm": "linf",
            "params": {"version": "standard"},
            "splits": ["test"],
        }
    }
    cfg["attacks"]["autoattack"]["epsilons"] = [8 / 255]
    cfg["latents"] = {"enabled": False}
    cfg["purification"] = {"enabled": False}
    cfg["tables"] = {}  # (the smoke config's Table 3 columns are attacks left out here)
    cfg["detection"] = {"enabled": False}
    work = tmp_path / "work"
    work.mkdir()
    (work / "rb.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = run_snakemake(work, work / "rb.yaml")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout + proc.stderr
    assert "import_robustbench" in out and "train_classifier" not in out

    run = "synthetic-smoke"
    info = json.loads((work / f"results/robustbench/{run}/autoattack/eps0.03137255.json").read_text())
    fields = [f.name for f in dataclasses.fields(ModelInfo)]
    assert list(info) == [*fields, "advdefense"]
    with open_attack_file(work / f"results/attacks/{run}/autoattack/eps0.03137255/test.h5") as f:
        summary = summarize_attack_file(f)
    assert info["eps"] == "8/255" and info["dataset"] == "cifar10" and info["name"] == NAME
    assert info["clean_acc"] == f"{100 * summary['clean_accuracy']:.2f}"
    assert info["autoattack_acc"] == f"{100 * summary['robust_accuracy']:.2f}"
    assert float(info["autoattack_acc"]) <= float(info["clean_acc"])
    extra = info["advdefense"]
    assert extra["threat_model"] == "Linf" and extra["n_test_images"] == 20
    assert extra["autoattack_version"] == "standard" and extra["autoattack_package"].startswith(
        "pyautoattack 0."
    )
    assert extra["classifier_source"] == "robustbench"
    metrics = json.loads((work / f"results/classifier/{run}/metrics.json").read_text())
    assert metrics["source"] == "robustbench" and metrics["test_images"] == 60
