"""Faults and bad input (issue 14): each case reproduces a fault found by trying the pipeline with bad
inputs, and checks that it now fails early with an error naming its cause, or recovers, and that
nothing is lost or silently wrong."""

from __future__ import annotations

import copy
import logging
import os
import pickle
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import advdefense.classifier as classifier_module
from advdefense.attack_files import AttackFileError, iter_adversarial_batches, read_attack_file
from advdefense.classifier import train_classifier
from advdefense.config import ConfigError, check_config_files, load_yaml, validate_config
from advdefense.config import main as check_config_main
from advdefense.data import (
    DataError,
    load_cifar_batches_dir,
    make_synthetic,
    read_dataset_h5,
    write_dataset_h5,
)
from advdefense.detection import load_pixel_inputs
from advdefense.errors import PipelineFileError
from advdefense.flow import attack_latents
from advdefense.h5io import atomic_h5, atomic_path, remove_stale_temporaries
from advdefense.latent_files import read_latents
from advdefense.models import load_checkpoint
from advdefense.purification import PurifierSetup, purify_attack_file
from conftest import REPO, SNAKEMAKE, run_snakemake

DATASET = "synthetic-smoke"


# ----------------------------------------------------------------------------- 1. stale resume state
class Killed(Exception):
    """Stands for the job being killed after an epoch (its resume state is on disk)."""


def _tiny_classifier_config(**classifier):
    cfg = load_yaml(REPO / "config/smoke.yaml")
    cfg["classifier"].update({"depth": 8, "width": 8, "epochs": 3, "batch_size": 50, **classifier})
    return validate_config(cfg)


def _run_classifier(data_path, cfg, out: Path):
    return train_classifier(
        data_path,
        cfg["classifier"],
        cfg["seed"],
        out / "model.pt",
        out / "metrics.json",
        out / "epochs.csv",
        out / "train_state.pt",
        device="cpu",
    )


def _train(data_path, cfg, out: Path, kill_after_epoch: int | None = None, monkeypatch=None):
    """Train the classifier stage; with `kill_after_epoch`, die right after that epoch's state is saved."""
    if kill_after_epoch is not None:
        real_predict, calls = classifier_module.predict, []

        def predict(*args, **kwargs):  # the per-epoch evaluation runs once per finished epoch
            calls.append(1)
            if len(calls) > kill_after_epoch:
                raise Killed()
            return real_predict(*args, **kwargs)

        monkeypatch.setattr(classifier_module, "predict", predict)
        with pytest.raises(Killed):
            _run_classifier(data_path, cfg, out)
        monkeypatch.setattr(classifier_module, "predict", real_predict)
        return None
    return _run_classifier(data_path, cfg, out)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "data.h5"
    write_dataset_h5(make_synthetic(150, 50, seed=0), path)
    return path


def _weights(path):
    model, _ = load_checkpoint(path, "classifier")
    return model.state_dict()


def test_changed_learning_rate_discards_the_stale_resume_state(tiny_data, tmp_path, monkeypatch, caplog):
    old, new = _tiny_classifier_config(), _tiny_classifier_config()
    new["classifier"]["optimizer"]["lr"] = old["classifier"]["optimizer"]["lr"] / 4
    # the job is killed after epoch 2 of a run with the old learning rate, then re-run with the new one
    _train(tiny_data, old, tmp_path / "run", kill_after_epoch=2, monkeypatch=monkeypatch)
    assert (tmp_path / "run/train_state.pt").is_file()
    with caplog.at_level(logging.WARNING):
        _train(tiny_data, new, tmp_path / "run")
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert "discarding the resume state" in message and "train_state.pt" in message
    assert "config.optimizer.lr" in message
    # the result is exactly that of an uninterrupted run with the new learning rate
    _train(tiny_data, new, tmp_path / "fresh")
    resumed, fresh = _weights(tmp_path / "run/model.pt"), _weights(tmp_path / "fresh/model.pt")
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)
    import pandas as pd

    lrs = pd.read_csv(tmp_path / "run/epochs.csv")["lr"]
    assert list(lrs) == list(pd.read_csv(tmp_path / "fresh/epochs.csv")["lr"])


def test_same_settings_still_resume_bit_for_bit(tiny_data, tmp_path, monkeypatch, caplog):
    cfg = _tiny_classifier_config()
    _train(tiny_data, cfg, tmp_path / "run", kill_after_epoch=2, monkeypatch=monkeypatch)
    with caplog.at_level(logging.INFO):
        _train(tiny_data, cfg, tmp_path / "run")
    assert "resuming from" in caplog.text and "discarding" not in caplog.text
    _train(tiny_data, cfg, tmp_path / "fresh")
    resumed, fresh = _weights(tmp_path / "run/model.pt"), _weights(tmp_path / "fresh/model.pt")
    assert all(torch.equal(resumed[k], fresh[k]) for k in fresh)


def test_changed_depth_or_corrupt_state_restarts_instead_of_crashing(
    tiny_data, tmp_path, monkeypatch, caplog
):
    _train(
        tiny_data, _tiny_classifier_config(), tmp_path / "run", kill_after_epoch=1, monkeypatch=monkeypatch
    )
    deeper = _tiny_classifier_config(depth=14)
    with caplog.at_level(logging.WARNING):
        metrics = _train(tiny_data, deeper, tmp_path / "run")
    assert "config.depth" in caplog.text and metrics["epochs"] == 3
    assert (
        _weights(tmp_path / "run/model.pt")["layer1.1.conv1.weight"].shape[0] == 8
    )  # depth 14: 2 blocks a stage

    caplog.clear()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt/train_state.pt").write_bytes(b"PK\x03\x04 truncated")
    with caplog.at_level(logging.WARNING):
        metrics = _train(tiny_data, _tiny_classifier_config(), tmp_path / "corrupt")
    assert (
        f"discarding the resume state {tmp_path / 'corrupt/train_state.pt'}: it cannot be read" in caplog.text
    )
    assert metrics["epochs"] == 3 and not (tmp_path / "corrupt/train_state.pt").exists()


# ----------------------------------------------------------------------------- 2. code from a data file
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "labels": [int(v) for v in rng.integers(0, 10, n)],
        "batch_label": "b",
        "filenames": [f"{i}.png" for i in range(n)],
    }


def _batches_dir(path: Path, poison: tuple[str, object] | None = None, protocol: int = 2) -> Path:
    path.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = _batch()
        if poison and poison[0] == name:
            obj = poison[1]
        (path / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    (path / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=protocol)
    )
    return path


def test_crafted_cifar_batch_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = _batches_dir(tmp_path / "evil", poison=("data_batch_3", {**_batch(), "labels": _Payload(marker)}))
    with pytest.raises(
        DataError, match=r"data_batch_3: refused to load: the pickle asks for (posix|os)\.system"
    ):
        load_cifar_batches_dir(evil)
    assert not marker.exists()
    # object arrays are refused as well (their elements would be arbitrary objects)
    objects = _batches_dir(
        tmp_path / "objects", poison=("test_batch", {**_batch(), "data": np.array([1, "x"], object)})
    )
    with pytest.raises(DataError, match="test_batch: refused to load: the pickle holds an object array"):
        load_cifar_batches_dir(objects)
    # what the official files hold loads, whatever the pickle protocol
    for protocol in (2, 4, 5):
        ds = load_cifar_batches_dir(_batches_dir(tmp_path / f"ok{protocol}", protocol=protocol))
        assert len(ds.train) == 20 and ds.train.images.dtype == np.uint8
        assert np.array_equal(ds.test.images.reshape(4, -1), _batch()["data"])


def test_the_real_mini_cifar_loads_through_the_restricted_reader(mini_cifar):
    ds = load_cifar_batches_dir(mini_cifar)
    with open(mini_cifar / "data_batch_1", "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")  # the trusted reference, on the known file only
    assert len(ds.train) == 4000 and len(ds.test) == 1000
    assert np.array_equal(ds.train.images[:800].reshape(800, -1), raw["data"])
    assert list(ds.train.labels[:800]) == list(raw["labels"])


# ----------------------------------------------------------------------------- 3. NaN / inf in attack files
def _poisoned_copy(src: Path, dst: Path, image: int, value: float) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        adv = f["adv"][image]
        adv[1, 2, 3] = value
        f["adv"][image] = adv
    return dst


@pytest.mark.slow
@pytest.mark.parametrize(
    "value,what", [(np.nan, "non-finite"), (np.inf, "non-finite"), (1.5, r"values outside \[0, 1\]")]
)
def test_a_bad_adversarial_is_named_by_every_stage(smoke_run, tmp_path, value, what):
    results = smoke_run / "results"
    src = results / f"attacks/{DATASET}/pgd/eps0.03/test.h5"
    bad = _poisoned_copy(src, tmp_path / "test.h5", image=7, value=value)
    expected = rf"{bad}: adversarial image 7 \(of 'adv'\) holds {what}"
    with pytest.raises(AttackFileError, match=expected):
        read_attack_file(bad)
    with pytest.raises(AttackFileError, match=expected):
        list(iter_adversarial_batches(bad, 4))
    # pixel detectors and the MMD test, latents, purification: all through the one reader
    with pytest.raises(AttackFileError, match=expected):
        load_pixel_inputs(results / f"data/{DATASET}.h5", "test", {"pgd": bad})
    with pytest.raises(AttackFileError, match=expected):
        attack_latents(bad, results / f"flow/{DATASET}/model.pt", tmp_path / "latents.h5", device="cpu")
    with pytest.raises(AttackFileError, match=expected):
        purify_attack_file(
            bad,
            PurifierSetup("autoencoder", {}, {"autoencoder": results / f"autoencoder/{DATASET}/model.pt"}),
            results / f"classifier/{DATASET}/model.pt",
            tmp_path / "purified.h5",
            device="cpu",
        )
    assert not (tmp_path / "latents.h5").exists() and not (tmp_path / "purified.h5").exists()
    assert not list(tmp_path.glob("*.tmp-*"))
    # the untouched file passes the same reader
    assert np.isfinite(read_attack_file(src).adv).all()


# ----------------------------------------------------------------------------- 4. which checkout a job runs
@pytest.mark.slow
def test_jobs_import_the_checkout_they_run_from(tmp_path):
    """Two checkouts: the installed package is this one, the Snakefile run is the other one's; the job
    must import the other one's code (before, it imported whichever advdefense was installed)."""
    other = tmp_path / "other-checkout"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (other / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, other / name)
    init = other / "src/advdefense/__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.0+other"'))
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = workdir / "smoke.yaml"
    shutil.copy(REPO / "config/smoke.yaml", config)
    cmd = [
        str(SNAKEMAKE),
        "--snakefile",
        str(other / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "1",
        f"results/data/{DATASET}.h5",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (workdir / f"logs/data/{DATASET}.log").read_text()
    assert f"advdefense 0.1.0+other from {(other / 'src/advdefense').resolve()}" in log


# ----------------------------------------------------------------------------- 5. attack parameters
@pytest.mark.parametrize(
    "attack,params,message",
    [
        ("pgd", {"steps": -5}, r"attacks.a.params.steps: must be a positive integer, got -5"),
        ("pgd", {"steps": 0}, r"attacks.a.params.steps: must be a positive integer, got 0"),
        ("pgd", {"rel_stepsize": 0.0}, r"attacks.a.params.rel_stepsize: must be positive, got 0.0"),
        ("pgd", {"abs_stepsize": -0.01}, r"attacks.a.params.abs_stepsize: must be positive"),
        ("deepfool", {"candidates": 0}, r"attacks.a.params.candidates: must be a positive integer"),
        ("deepfool", {"overshoot": -0.02}, r"attacks.a.params.overshoot: must be 0 or more, got -0.02"),
        (
            "cw",
            {"binary_search_steps": 0},
            r"attacks.a.params.binary_search_steps: must be a positive integer",
        ),
    ],
)
def test_attack_parameters_out_of_range_are_refused_before_any_job(attack, params, message):
    classes = {
        "pgd": ("LinfPGD", "linf"),
        "deepfool": ("LinfDeepFoolAttack", "linf"),
        "cw": ("L2CarliniWagnerAttack", "l2"),
    }
    cls, norm = classes[attack]
    with pytest.raises(ConfigError, match=message):
        validate_config(
            {"attacks": {"a": {"class": cls, "norm": norm, "epsilons": [0.02], "params": params}}}
        )


def test_attack_parameters_in_range_are_accepted():
    cfg = validate_config(
        {
            "attacks": {
                "a": {
                    "class": "LinfPGD",
                    "norm": "linf",
                    "epsilons": [0.02],
                    "params": {"steps": 1, "abs_stepsize": 0.01, "random_start": False},
                },
                "b": {
                    "class": "LinfDeepFoolAttack",
                    "norm": "linf",
                    "epsilons": [0.02],
                    "params": {"overshoot": 0.0, "candidates": 10},
                },
            }
        }
    )
    assert cfg["attacks"]["a"]["params"]["steps"] == 1


# ----------------------------------------------------------------------------- 6. checks before any output is deleted
@pytest.mark.slow
def test_size_errors_stop_snakemake_before_it_deletes_anything(smoke_run, tmp_path):
    run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    data = run / f"results/data/{DATASET}.h5"
    mtime = data.stat().st_mtime_ns
    cfg = yaml.safe_load((run / "smoke.yaml").read_text())
    bad_cases = [
        (
            ("dataset", "train_size"),
            10**6,
            "dataset.train_size: asked for 1000000 images but the train split of the "
            "synthetic source has only 3400",
        ),
        (("attack_defaults", "images", "test"), 9999, "attack_defaults.images.test: asked for 9999 images"),
        (
            ("purification", "adaptive", "images"),
            100000,
            "purification.adaptive.images: 100000 is more than the",
        ),
    ]
    for keys, value, message in bad_cases:
        bad = copy.deepcopy(cfg)
        node = bad
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
        configfile = tmp_path / "bad.yaml"
        configfile.write_text(yaml.safe_dump(bad))
        proc = run_snakemake(run, configfile)  # a real run, not a dry run
        assert proc.returncode != 0
        assert message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
        assert data.stat().st_mtime_ns == mtime
    proc = run_snakemake(run, run / "smoke.yaml", "-n")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def test_size_checks_use_the_local_directory_counts(mini_cifar):
    cfg = load_yaml(REPO / "config/cifar10-mini.yaml")
    cfg["dataset"]["path"] = str(mini_cifar)
    validate_config(cfg)
    cfg["dataset"]["test_size"] = 1001
    with pytest.raises(
        ConfigError,
        match="dataset.test_size: asked for 1001 images but the test split of the local source has only 1000",
    ):
        validate_config(cfg)


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"flow": {"init_images": 5000}}, "flow.init_images: 5000 is more than the 3200 training images"),
        (
            {"detection": {"mmd": {"batch_sizes": [10, 900], "table_batch_size": 10}}},
            "detection.mmd.batch_sizes: 900 is more than the 200 images",
        ),
        # smoke: 500 attacked images per split, batches of 100: five batches, so at most five shards
        (
            {"attack_defaults": {"shards": 6}},
            r"attack_defaults.shards: 6 shards, but the train split "
            r"\(attack_defaults.images.train\) has 500 image\(s\), 5 batch\(es\) of "
            r"attack_defaults.batch_size 100; .* use at most 5 shards",
        ),
        ({"attack_defaults": {"shards": 0}}, r"attack_defaults.shards: 0 is less than the minimum of 1"),
    ],
)
def test_other_counts_are_checked_against_the_data(smoke_config, patch, message):
    for section, values in patch.items():
        for k, v in values.items():
            if isinstance(v, dict):
                smoke_config[section].setdefault(k, {}).update(v)
            else:
                smoke_config[section][k] = v
    with pytest.raises(ConfigError, match=message):
        validate_config(smoke_config)


# ----------------------------------------------------------------------------- 7. errors name the file
def test_truncated_or_corrupt_files_are_named(tmp_path, tiny_data):
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(tiny_data.read_bytes()[: tiny_data.stat().st_size // 2])
    with pytest.raises(PipelineFileError, match=rf"{truncated}: "):
        read_dataset_h5(truncated)
    with pytest.raises(PipelineFileError, match=rf"{truncated}: "):
        read_attack_file(truncated)
    with pytest.raises(PipelineFileError, match=rf"{truncated}: "):
        read_latents(truncated)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(PipelineFileError, match=rf"{garbage}: cannot be read as an HDF5 file"):
        read_latents(garbage)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(PipelineFileError, match=rf"{checkpoint}: not a loadable checkpoint"):
        load_checkpoint(checkpoint, "classifier")


@pytest.mark.slow
def test_a_truncated_input_of_a_job_is_named_in_its_log(smoke_run, tmp_path):
    run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    victim = run / f"results/latents/{DATASET}/fgsm/eps0.03/test.h5"
    stat = victim.stat()
    victim.write_bytes(victim.read_bytes()[:3000])
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: Snakemake sees nothing new
    proc = run_snakemake(
        run,
        run / "smoke.yaml",
        "--forcerun",
        "detect",
        targets=(f"results/detection/{DATASET}/latent_mlp/evaluation.csv",),
    )
    assert proc.returncode != 0
    log = (run / f"logs/detection/{DATASET}/latent_mlp.log").read_text()
    # the job names its input as Snakemake gave it (relative to the working directory)
    assert (
        f"results/latents/{DATASET}/fgsm/eps0.03/test.h5: cannot be read as an HDF5 file, truncated or corrupt?"
        in log
    )


# ----------------------------------------------------------------------------- 8. two epsilons, one file
@pytest.mark.parametrize(
    "epsilons,message",
    [
        ([0.03, 0.0300000001], r"attacks.a.epsilons: 0.03 and 0.0300000001 are the same epsilon .*eps0.03"),
        ([0.02, 0.02], r"attacks.a.epsilons: \[0.02, 0.02\] has non-unique elements"),  # the schema
        ([1e-11, 1e-12], r"attacks.a.epsilons: 1e-11 is too small to name a file"),
    ],
)
def test_epsilons_whose_file_tags_collide_are_refused(epsilons, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"attacks": {"a": {"class": "LinfPGD", "norm": "linf", "epsilons": epsilons}}})


# ----------------------------------------------------------------------------- 9. no silent caps
def test_adaptive_images_beyond_the_attacked_images_are_refused(smoke_config):
    smoke_config["purification"]["adaptive"]["images"] = 100000
    with pytest.raises(
        ConfigError,
        match=r"purification.adaptive.images: 100000 is more than the 500 test images "
        r"that are attacked",
    ):
        validate_config(smoke_config)
    smoke_config["purification"]["adaptive"]["images"] = 500  # exactly the attacked images: fine
    validate_config(smoke_config)


# ----------------------------------------------------------------------------- 10. leftovers
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_cleaned_when_the_file_is_written_again(tmp_path):
    out = tmp_path / "test.h5"
    host = platform.node()
    dead = _dead_pid()
    stale = [tmp_path / f"test.h5.tmp-{host}-{dead}", tmp_path / f"test.h5.tmp-{dead}"]  # new and old naming
    alive = [
        tmp_path / f"test.h5.tmp-{host}-{os.getppid()}",
        tmp_path / f"test.h5.tmp-otherhost-{dead}",
        tmp_path / f"other.h5.tmp-{host}-{dead}",
    ]
    for p in stale + alive:
        p.write_bytes(b"half-written")
    with atomic_h5(out) as f:
        f.create_dataset("x", data=np.arange(3))
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in alive)  # a live writer's, another host's, another file's
    with h5py.File(out) as f:
        assert list(f["x"][()]) == [0, 1, 2]
    assert remove_stale_temporaries(out) == []


def test_a_killed_writer_leaves_its_temporary_and_the_next_run_removes_it(tmp_path):
    out = tmp_path / "result.json"
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[2]); from advdefense.h5io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('partial'); os._exit(9)"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(REPO / "src")])
    assert proc.returncode == 9 and not out.exists()
    leftovers = list(tmp_path.glob("result.json.tmp-*"))
    assert len(leftovers) == 1
    with atomic_path(out) as tmp:
        tmp.write_text("complete")
    assert out.read_text() == "complete" and not list(tmp_path.glob("result.json.tmp-*"))


def test_config_file_errors_name_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 0\ndataset:\n  name: [unclosed\nclassifier:\n\tdepth: 20\n")
    with pytest.raises(ConfigError, match=rf"config file {bad}: YAML syntax error at line \d+, column \d+"):
        check_config_files([bad])
    assert check_config_main([str(bad)]) == 1
    assert f"config file {bad}: YAML syntax error at line" in capsys.readouterr().err
    assert check_config_main([str(tmp_path / "missing.yaml")]) == 1
    assert f"config file {tmp_path / 'missing.yaml'} does not exist" in capsys.readouterr().err
    # several files merge key by key, as Snakemake merges them; the merged result is validated
    extra = tmp_path / "extra.yaml"
    extra.write_text("classifier:\n  depth: 21\n")
    with pytest.raises(ConfigError, match="classifier.depth: 21 is not of the form 6n\\+2"):
        check_config_files([REPO / "config/smoke.yaml", extra])
    assert check_config_main([str(REPO / "config/smoke.yaml")]) == 0
