"""Bad input, round 3 (issue 40): lost results, code from a model file, a hang, and files that lie. Each case is one
that the pipeline got wrong before (numbered as in the issue) and checks the clear error that replaces it."""

from __future__ import annotations

import copy
import io
import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from advdefense.attack_files import AttackFileError, read_attack_file, summarize_attack_files
from advdefense.attacks import attack_split
from advdefense.classifier import import_classifier, load_classifier
from advdefense.config import ConfigError, check_config_files, check_file_times, load_yaml, validate_config
from advdefense.data import DataError, make_synthetic, read_split, write_dataset_h5
from advdefense.errors import PipelineFileError
from advdefense.models import load_checkpoint, save_checkpoint
from advdefense.models.archives import MIN_TORCH, UnsafeModelFile, check_archive, check_torch_version
from advdefense.models.checkpoint import CHECKPOINT_FORMAT
from advdefense.models.resnet import CifarResNet
from advdefense.plan.jobs import AttackJob, CheckpointSource
from advdefense.plan.names import file_sha256
from conftest import REPO, run_snakemake


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.h5"
    write_dataset_h5(make_synthetic(200, 100, seed=3), path)
    return path


def _set(cfg: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return cfg


# ----------------------------------------------------------------------------- 1, 8, 11, 12, 13: refused at validation
@pytest.mark.parametrize(
    "key,value,message",
    [
        ("classifier.epochs", 5.0, r"classifier\.epochs: 5\.0 is not of type 'integer'"),
        ("classifier.depth", 8.0, r"classifier\.depth: 8\.0 is not of type 'integer'"),
        ("flow.K", 4.0, r"flow\.K: 4\.0 is not of type 'integer'"),
        ("classifier.batch_size", 100.0, r"classifier\.batch_size: 100\.0 is not of type 'integer'"),
        (
            "classifier.optimizer.momentum",
            float("nan"),
            r"classifier\.optimizer\.momentum: nan is not a finite",
        ),
        (
            "classifier.optimizer.weight_decay",
            float("inf"),
            r"classifier\.optimizer\.weight_decay: inf is not a",
        ),
        ("detection.fprs", [0.05, float("nan")], r"detection\.fprs\.1: nan is not a finite number"),
        ("flow.optimizer.lr", float("nan"), r"flow\.optimizer\.lr: nan"),
        ("detection.aware.lambdas", [0, float("inf")], r"detection\.aware\.lambdas\.1: inf"),
        ("autoencoder.noise_std", float("nan"), r"autoencoder\.noise_std: nan"),
        ("classifier.schedule.warmup_epochs", float("nan"), r"classifier\.schedule\.warmup_epochs: nan"),
        ("dataset.synthetic.noise", float("nan"), r"dataset\.synthetic\.noise: nan is not a finite number"),
        (
            "seed",
            18446744073709551616,
            r"seed: 18446744073709551616 is greater than the maximum of 4294967295",
        ),
        ("seed", 1.0, r"seed: 1\.0 is not of type 'integer'"),
        ("seeds", [0, 1.0], r"seeds\.1: 1\.0 is not of type 'integer'"),
        (
            "dataset.synthetic.train_images",
            1e11,
            r"dataset\.synthetic\.train_images: 100000000000\.0 is not of type",
        ),
        (
            "dataset.synthetic.train_images",
            10**11,
            r"dataset\.synthetic\.train_images: 100000000000 is greater",
        ),
        ("dataset.name", "x" * 300, r"dataset\.name: 'x+' is too long"),
        ("container", "docker://example.org/advdefense:{version}", r"container: .* does not match"),
        (
            "classifier.robustbench.name",
            "../../../evil",
            r"classifier\.robustbench\.name: '\.\./\.\./\.\./evil' does",
        ),
        (
            "dataset.name",
            "smk-pgd_at",
            r"dataset\.name: 'smk-pgd_at' ends in -pgd_at, the name of a run of a list",
        ),
    ],
)
def test_refused_at_validation(smoke_config, key, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_set(smoke_config, key, value))


@pytest.mark.parametrize(
    "name,message",
    [
        (True, r"attacks\.True: a key must be a name, but YAML reads this one as bool True"),
        (1, r"attacks\.1: a key must be a name, but YAML reads this one as int 1"),
        (None, r"attacks\.None: a key must be a name"),
        ("noise_sign", r"attacks\.noise_sign: 'noise_sign' is the name of a random-noise control"),
    ],
)
def test_attack_names_that_are_not_names(smoke_config, name, message):
    smoke_config["attacks"][name] = copy.deepcopy(smoke_config["attacks"]["fgsm"])
    with pytest.raises(ConfigError, match=message):
        validate_config(smoke_config)


def test_a_config_whose_values_are_shared_objects_is_refused_at_once(smoke_config):
    """An alias bomb of nine levels (what Snakemake's own YAML reading hands the Snakefile): refused in well
    under a second instead of hanging the config check and `snakemake -n`."""
    level = list(range(9))
    for _ in range(9):
        level = [level] * 9
    smoke_config["seeds"] = level
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"seeds\.1: this value is the same object as another key's"):
        validate_config(smoke_config)
    assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------- 7, 9, 10: the files as written
def test_config_files_with_aliases_repeated_keys_or_nothing(tmp_path, smoke_config):
    bomb = "x0: &x0 [0, 1, 2, 3, 4, 5, 6, 7, 8]\n"
    bomb += "".join(f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]\n" for i in range(1, 9))
    (tmp_path / "bomb.yaml").write_text(bomb + f"seeds: [{', '.join(['*x8'] * 9)}]\n")
    t0 = time.perf_counter()
    with pytest.raises(
        ConfigError, match=r"bomb\.yaml: line 2: the alias \*x0 repeats another part of the file"
    ):
        load_yaml(tmp_path / "bomb.yaml")
    assert time.perf_counter() - t0 < 5
    (tmp_path / "twice.yaml").write_text("classifier:\n  epochs: 5\n  batch_size: 64\n  epochs: 200\n")
    with pytest.raises(
        ConfigError,
        match=r"twice\.yaml: line 4: key 'epochs' is given twice in one block \(first on line 2\)",
    ):
        load_yaml(tmp_path / "twice.yaml")
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(smoke_config))
    (tmp_path / "empty.yaml").write_text("# nothing here yet\n")
    with pytest.raises(ConfigError, match=r"config file .*empty\.yaml is empty"):
        check_config_files([tmp_path / "smoke.yaml", tmp_path / "empty.yaml"])


# ----------------------------------------------------------------------------- 2: files modified in the future
def test_files_modified_in_the_future_are_named(tmp_path):
    (tmp_path / "results/data").mkdir(parents=True)
    now = time.time()
    for name, ahead in (("a.h5", 86400), ("b.h5", 30), ("c.h5", 3600)):
        path = tmp_path / "results/data" / name
        path.write_text("x")
        os.utime(path, (now + ahead, now + ahead))
    with pytest.raises(ConfigError, match=r"2 file\(s\) were modified in the future") as err:
        check_file_times([tmp_path / "results"], now=now)
    assert "a.h5 (24.0 h ahead)" in str(err.value) and "c.h5 (1.0 h ahead)" in str(err.value)
    assert "b.h5" not in str(err.value)  # within the clock tolerance of a cluster
    check_file_times([tmp_path / "results"], now=now + 86400)  # all in the past then


@pytest.mark.slow
def test_bad_edits_of_a_finished_run_delete_nothing(smoke_run, tmp_path):
    """On a finished smoke run: `epochs: 5.0`, a key given twice and a dataset file dated tomorrow each stop
    Snakemake before any job, naming the cause, and every finished output stays as it was."""
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    outputs = {p: p.stat().st_mtime for p in (work / "results").rglob("*") if p.is_file()}
    model = work / "results/classifier/synthetic-smoke/model.pt"
    assert model in outputs
    text = (work / "smoke.yaml").read_text()
    cases = [
        (
            "floats.yaml",
            re.sub(r"(\n  epochs: )(\d+)", r"\g<1>\g<2>.0", text, count=1),
            None,
            r"classifier\.epochs: \d+\.0 is not of type 'integer'",
        ),
        (
            "twice.yaml",
            text.replace("\nclassifier:\n", "\nclassifier:\n  epochs: 200\n", 1),
            None,
            r"key 'epochs' is given twice in one block",
        ),
        ("smoke.yaml", text, work / "results/data/synthetic-smoke.h5", r"were modified in the future"),
    ]
    for name, config, future, message in cases:
        (work / name).write_text(config)
        if future is not None:
            os.utime(future, (time.time() + 86400, time.time() + 86400))
        proc = run_snakemake(work, work / name)
        assert proc.returncode != 0
        assert re.search(message, proc.stderr), proc.stderr[-3000:]
        assert all(p.exists() for p in outputs), f"{name}: a finished output was deleted"
        assert {p: p.stat().st_mtime for p in outputs if p != future} == {
            p: t for p, t in outputs.items() if p != future
        }, f"{name}: a finished output was deleted or rewritten"


# ----------------------------------------------------------------------------- 3: code and side effects from a model
class FileWriter(torch.nn.Module):
    """Maps a file of someone else's into memory and writes into it on its first forward."""

    def __init__(self, victim: str):
        super().__init__()
        self.victim = victim
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        mapped = torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8)
        mapped.fill_(65)
        return self.fc(x.flatten(1)) + mapped[0].float() * 0


class Printer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        print("a classifier that talks")
        return self.fc(x.flatten(1))


class Reseeder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        torch.manual_seed(0)
        return self.fc(x.flatten(1))


class LoadTimeCode(torch.nn.Module):
    """Runs code while torch.jit.load reads it (`__setstate__`)."""

    def __init__(self, victim: str):
        super().__init__()
        self.victim = victim
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))

    @torch.jit.export
    def __getstate__(self) -> tuple[str, torch.Tensor, torch.Tensor, bool]:
        return (self.victim, self.fc.weight, self.fc.bias, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, torch.Tensor, bool]) -> None:
        self.victim = state[0]
        torch.from_file(self.victim, shared=True, size=4, dtype=torch.uint8).fill_(66)
        self.training = state[3]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda victim: FileWriter(victim), r"its forward calls aten::from_file: it reaches files"),
        (lambda victim: Printer(), r"its forward calls prim::Print"),
        (
            lambda victim: Reseeder(),
            r"its forward calls aten::manual_seed: it reaches .* the global random state",
        ),
    ],
)
def test_a_torchscript_program_outside_tensor_arithmetic_is_refused(data, tmp_path, make, message):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(make(str(victim)).eval()), str(path))
    out = (tmp_path / "out.pt", tmp_path / "metrics.json")
    with pytest.raises(UnsafeModelFile, match=message):
        import_classifier(CheckpointSource(path, sha256=file_sha256(path)), data, *out, device="cpu")
    assert victim.read_text() == "keep" and not out[0].exists() and not out[1].exists()


def test_torchscript_that_runs_code_when_loaded_is_refused_unloaded(data, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(LoadTimeCode(str(victim)).eval()), str(path))
    with pytest.raises(UnsafeModelFile, match=r"defines __setstate__, code that torch\.jit\.load would run"):
        import_classifier(
            CheckpointSource(path, sha256=file_sha256(path)),
            data,
            tmp_path / "out.pt",
            tmp_path / "m.json",
            device="cpu",
        )
    assert victim.read_text() == "keep"


def test_a_stored_checkpoint_holds_only_allowed_operations(tmp_path):
    """A pipeline checkpoint whose stored TorchScript program was swapped for one that writes files is refused
    when any later job loads it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(FileWriter(str(victim)).eval()), buffer)
    arch = {
        "name": "external",
        "format": "torchscript",
        "source_format": "torchscript",
        "mean": None,
        "std": None,
        "num_classes": 10,
    }
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "kind": "classifier",
            "arch": arch,
            "state_dict": {"torchscript": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)},
            "metadata": {},
        },
        tmp_path / "model.pt",
    )
    with pytest.raises(
        PipelineFileError, match=r"its stored TorchScript program: its forward calls aten::from_file"
    ):
        load_classifier(tmp_path / "model.pt")
    assert victim.read_text() == "keep"


# ----------------------------------------------------------------------------- 4: torch >= 2.6 everywhere
def test_torch_is_required_at_2_6_everywhere():
    pins = {}
    pins["pyproject.toml"] = re.search(
        r'^\s*"(torch[<>=!~][^"]*)"', (REPO / "pyproject.toml").read_text(), re.M
    )[1]
    for env in ("envs/pipeline.yaml", "envs/report.yaml", "Dockerfile"):
        found = re.findall(r"torch==([0-9.]+)", (REPO / env).read_text())
        assert found, env
        pins[env] = found
    assert pins["pyproject.toml"].startswith("torch>=2.6")
    for env in ("envs/pipeline.yaml", "envs/report.yaml", "Dockerfile"):
        for version in pins[env]:
            assert tuple(int(v) for v in version.split(".")[:2]) >= MIN_TORCH, (env, version)
    assert set(pins["envs/pipeline.yaml"]) == set(pins["envs/report.yaml"]) == set(pins["Dockerfile"])
    for old in ("2.5.1", "2.2.0", "1.13.1+cu117"):
        with pytest.raises(
            RuntimeError, match=rf"torch {re.escape(old)} is installed, but this pipeline needs torch >= 2\.6"
        ):
            check_torch_version(old)
    check_torch_version("2.6.0+cpu")
    check_torch_version(torch.__version__)


# ----------------------------------------------------------------------------- 5: memory bombs
def _deflated(src: Path, dst: Path) -> None:
    """`src` (a torch zip archive) written again with every entry deflated, as a crafted file would be."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for entry in zin.infolist():
            zout.writestr(entry.filename, zin.read(entry))


def test_archives_that_declare_more_than_they_hold_are_refused_before_loading(tmp_path):
    plain = tmp_path / "plain.pt"
    save_checkpoint(
        plain, "classifier", CifarResNet(8).eval(), {"pad": torch.zeros(16 * 2**20, dtype=torch.uint8)}
    )
    bomb = tmp_path / "bomb.pt"
    _deflated(plain, bomb)
    assert bomb.stat().st_size < plain.stat().st_size / 20
    with pytest.raises(
        UnsafeModelFile, match=r"bomb\.pt: entry .* declares 16\.0 MiB from .* a decompression bomb"
    ):
        load_checkpoint(bomb, "classifier")
    load_checkpoint(plain, "classifier")  # the same content stored plainly loads
    with pytest.raises(UnsafeModelFile, match=r"declare 0\.02 GiB in all, more than the 0 GiB"):
        check_archive(plain, "plain.pt", limit=2**20)
    script = tmp_path / "script.pt"
    torch.jit.save(
        torch.jit.trace(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 4096)), torch.rand(1, 3, 32, 32)
        ),
        str(script),
    )
    zeroed = tmp_path / "zeroed.pt"
    with zipfile.ZipFile(script) as zin, zipfile.ZipFile(zeroed, "w", zipfile.ZIP_DEFLATED) as zout:
        for entry in zin.infolist():
            body = zin.read(entry)
            zout.writestr(entry.filename, bytes(len(body)) if "/data/" in entry.filename else body)
    with pytest.raises(UnsafeModelFile, match=r"a decompression bomb"):
        import_classifier(
            CheckpointSource(zeroed, sha256=file_sha256(zeroed)),
            tmp_path / "none.h5",
            tmp_path / "o.pt",
            tmp_path / "m.json",
            device="cpu",
        )


# ----------------------------------------------------------------------------- 6: models that fake robustness
class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3072, 10)


class FlipsOnLargeBatches(Linear):
    def forward(self, x):
        out = self.fc(x.flatten(1))
        return -out if x.shape[0] > 64 else out


class NegatesUnderGradients(Linear):
    def forward(self, x):
        out = self.fc(x.flatten(1))
        return -out if torch.is_grad_enabled() else out


class Detached(Linear):
    def forward(self, x):
        return self.fc(x.flatten(1)).detach()


class CountsItsCalls(Linear):
    """A Python call counter (a builder model: its check runs before any trace)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        out = self.fc(x.flatten(1))
        return -out if self.calls > 30 else out


@pytest.mark.parametrize(
    "model,message",
    [
        (FlipsOnLargeBatches, r"change when they come in a batch of 500 instead of 64"),
        (NegatesUnderGradients, r"gives other logits when gradients are enabled"),
        (Detached, r"the model's logits carry no gradient"),
    ],
)
def test_models_that_would_fake_robustness_are_refused(data, tmp_path, model, message):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model().eval()), str(path))
    out = (tmp_path / "out.pt", tmp_path / "metrics.json")
    with pytest.raises(ConfigError, match=message):
        import_classifier(
            CheckpointSource(path, sha256=file_sha256(path)), data, *out, device="cpu", eval_batch_size=500
        )
    assert not out[0].exists()


BUILDER = """
import sys
sys.path.insert(0, {tests!r})
from test_bad_input_3 import CountsItsCalls
def build():
    return CountsItsCalls()
"""


def test_a_builder_model_that_counts_its_calls_is_refused(data, tmp_path):
    (tmp_path / "counting.py").write_text(BUILDER.format(tests=str(REPO / "tests")))
    weights = tmp_path / "weights.pt"
    torch.save(CountsItsCalls().state_dict(), weights)
    with pytest.raises(ConfigError, match=r"not in eval-safe form"):
        import_classifier(
            CheckpointSource(
                weights, sha256=file_sha256(weights), builder=f"{tmp_path / 'counting.py'}:build"
            ),
            data,
            tmp_path / "o.pt",
            tmp_path / "m.json",
            device="cpu",
        )


def test_an_honest_model_passes_every_check(data, tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(CifarResNet(8).eval(), torch.rand(2, 3, 32, 32)), str(path))
    metrics = import_classifier(
        CheckpointSource(path, sha256=file_sha256(path)),
        data,
        tmp_path / "o.pt",
        tmp_path / "m.json",
        device="cpu",
        eval_batch_size=300,
    )
    assert metrics["test_images"] == 100
    assert load_classifier(tmp_path / "o.pt") is not None


# ----------------------------------------------------------------------------- 14: attack files that lie
@pytest.fixture(scope="module")
def attack_file(data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("attack")
    resnet = folder / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(resnet, "classifier", CifarResNet(8).eval())
    path = folder / "pgd" / "eps0.03" / "test.h5"
    path.parent.mkdir(parents=True)
    spec = {
        "class": "LinfPGD",
        "norm": "linf",
        "params": {"steps": 3, "abs_stepsize": 0.01, "random_start": True},
        "quantize": "float",
        "restarts": 1,
    }
    attack_split(
        load_classifier(resnet),
        data,
        AttackJob(name="pgd", spec=spec, eps=0.03, split="test", images=40, seed=0, batch_size=20),
        path,
        device="cpu",
        attrs={"classifier_sha256": file_sha256(resnet)},
    )
    return path


def _tampered(src: Path, tmp_path: Path, edit) -> Path:
    dst = tmp_path / "pgd" / "eps0.03" / "test.h5"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def _write(f, key, value):
    f[key][...] = value


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda f: _write(f, "label", np.full(len(f["label"]), 99)),
            r"'success' disagrees|'label' differs from the data set's",
        ),
        (
            lambda f: (_write(f, "label", np.full(len(f["label"]), 99)), _write(f, "success", True)),
            r"'label' differs from the data set's labels for 40 of 40 images",
        ),
        (
            lambda f: _write(f, "success", ~f["success"][()]),
            r"'success' disagrees with pred_adv != label for 40 of 40",
        ),
        (lambda f: f.attrs.__setitem__("epsilon", 0.5), r"its attributes say eps '0\.5' \(path: '0\.03'\)"),
        (
            lambda f: _write(f, "adv", 1 - f["adv"][()]),
            r"adversarial\(s\) lie outside the linf ball of epsilon 0\.03",
        ),
        (lambda f: _write(f, "linf", f["linf"][()] / 2), r"the stored 'linf' is not the distance"),
        (lambda f: _write(f, "index", np.r_[-1, f["index"][1:]]), r"'index' holds negative image positions"),
        (
            lambda f: _write(f, "index", np.r_[10**6, f["index"][1:]]),
            r"'index' names image 1000000, but the split has 100",
        ),
        (
            lambda f: _write(f, "index", np.r_[f["index"][1], f["index"][1:]]),
            r"'index' names 1 image\(s\) twice",
        ),
    ],
)
def test_attack_files_that_lie_are_refused(data, attack_file, tmp_path, edit, message):
    summarize_attack_files([attack_file], data=data)  # the honest file passes
    lying = _tampered(attack_file, tmp_path, edit)
    with pytest.raises(AttackFileError, match=message):
        summarize_attack_files([lying], data=data)
    with pytest.raises(AttackFileError, match=message):
        read_attack_file(lying, data=data)


# ----------------------------------------------------------------------------- 15: dataset files that lie
def test_dataset_files_with_float_pixels_or_labels_out_of_range(data, tmp_path):
    def edited(name, edit):
        path = tmp_path / name
        shutil.copy(data, path)
        with h5py.File(path, "a") as f:
            edit(f)
        return path

    def floats(f):
        images = f["test/images"][()].astype(np.float32) / 255
        del f["test/images"]
        f["test/images"] = images

    with pytest.raises(
        DataError, match=r"floats\.h5: /test/images are float32, but a dataset file holds uint8"
    ):
        read_split(edited("floats.h5", floats), "test")
    for label in (10, -1):
        path = edited(f"label{label}.h5", lambda f, v=label: f["test/labels"].__setitem__(0, v))
        with pytest.raises(DataError, match=rf"label{label}\.h5: /test/labels: 1 label\(s\) outside 0\.\.9"):
            read_split(path, "test")
    names = edited("names.h5", lambda f: f.attrs.__setitem__("class_names", ["a", "b", "c"]))
    with pytest.raises(
        DataError,
        match=r"names\.h5: /test/labels: \d+ label\(s\) outside 0\.\.2 .* for the file's 3 class names",
    ):
        read_split(names, "test")
