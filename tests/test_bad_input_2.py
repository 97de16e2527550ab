"""Bad input, round 2 (issue 25): each case reproduces a fault found by trying the pipeline as a careful user and an
attacker would, and checks the clear error (or the right result) that replaces it. Numbered as in the issue."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from test_flow import _published_files, reference  # noqa: F401 (a fixture)

from advdefense.attack_files import AttackFileError, merge_attack_shards
from advdefense.attacks import attack_split
from advdefense.classifier import import_classifier, load_classifier
from advdefense.config import ConfigError, validate_config
from advdefense.data import build_dataset, load_cifar_batches_dir, make_synthetic, write_dataset_h5
from advdefense.errors import PipelineFileError
from advdefense.flow import load_published_glow
from advdefense.inference import NonFiniteOutput, predict
from advdefense.models import CheckpointError
from advdefense.models.checkpoint import CHECKPOINT_FORMAT
from advdefense.models.resnet import CifarResNet
from advdefense.plan.jobs import AttackJob, CheckpointSource
from advdefense.plan.names import file_sha256, is_runtime_key
from advdefense.purification import PurifierSetup, purify_clean
from conftest import REPO, job_counts, run_snakemake

PGD = {
    "class": "LinfPGD",
    "norm": "linf",
    "params": {"steps": 3, "abs_stepsize": 0.01, "random_start": True},
    "quantize": "float",
    "restarts": 1,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.h5"
    write_dataset_h5(make_synthetic(200, 100, seed=3), path)
    return path


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    from advdefense.models import save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clf") / "model.pt"
    save_checkpoint(path, "classifier", CifarResNet(8).eval())
    return path


# ----------------------------------------------------------------------------- 1. no code from a checkpoint
HELPER = """
from pathlib import Path
def build():
    Path(__file__).with_name("ran.txt").write_text("the checkpoint ran my code")
    import torch
    return torch.nn.Linear(3, 10)
"""


@pytest.mark.parametrize("builder", ["helper.py:build", "tempfile:mkdtemp"])
def test_a_checkpoint_that_names_code_is_refused_without_running_it(tmp_path, builder, monkeypatch):
    (tmp_path / "helper.py").write_text(HELPER)
    monkeypatch.chdir(tmp_path)
    made = set(Path("/tmp").iterdir())
    crafted = tmp_path / "model.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "kind": "classifier",
            "arch": {
                "name": "external",
                "format": "state_dict",
                "builder": builder,
                "mean": None,
                "std": None,
                "num_classes": 10,
            },
            "state_dict": {},
            "metadata": {},
        },
        crafted,
    )
    with pytest.raises(
        CheckpointError,
        match=r"model\.pt: the checkpoint names code to build its model \(builder "
        r".*\) instead of holding it; a checkpoint never names code to run",
    ):
        load_classifier(crafted)
    assert not (tmp_path / "ran.txt").exists()  # the helper never ran
    assert set(Path("/tmp").iterdir()) <= made  # mkdtemp never ran


BUILDER = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def build():
    return Net()
"""


def test_a_builder_model_is_stored_self_contained(data, tmp_path):
    (tmp_path / "builder.py").write_text(BUILDER)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(BUILDER, namespace)
    original = namespace["build"]().eval()
    torch.save(original.state_dict(), tmp_path / "weights.pt")
    out = (tmp_path / "model.pt", tmp_path / "metrics.json")
    metrics = import_classifier(
        CheckpointSource(
            tmp_path / "weights.pt",
            sha256=file_sha256(tmp_path / "weights.pt"),
            builder=f"{tmp_path / 'builder.py'}:build",
        ),
        data,
        *out,
        device="cpu",
    )
    assert metrics["builder_sha256"] == file_sha256(tmp_path / "builder.py")  # 4: pinned with the checkpoint
    raw = torch.load(out[0], weights_only=True)
    assert raw["arch"]["format"] == "export" and "builder" not in raw["arch"]
    (tmp_path / "builder.py").write_text("raise RuntimeError('the builder must not run again')\n")
    model = load_classifier(out[0])  # loads without the builder
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), original(x), atol=1e-5)


# ----------------------------------------------------------------------------- 2. a shard of another job
def _shards(tmp_path, data, resnet, spec):
    model = load_classifier(resnet)
    paths = []
    for k in range(2):
        path = tmp_path / f"{spec['quantize']}.{k}.h5"
        attack_split(
            model,
            data,
            AttackJob(
                name="pgd", spec=spec, eps=0.03, split="test", images=40, seed=0, batch_size=20, shard=(k, 2)
            ),
            path,
            device="cpu",
            attrs={"classifier_sha256": file_sha256(resnet)},
        )
        paths.append(path)
    return paths


def test_a_shard_of_another_job_is_not_merged(data, resnet, tmp_path):
    plain = _shards(tmp_path, data, resnet, PGD)
    rounded = _shards(tmp_path, data, resnet, {**PGD, "quantize": "8bit"})
    with pytest.raises(
        AttackFileError,
        match=r"8bit\.1\.h5: made by another job than .*float\.0\.h5 \(quantize "
        r"\('float' vs '8bit'\)\)",
    ):
        merge_attack_shards([plain[0], rounded[1]], tmp_path / "merged.h5")
    with h5py.File(rounded[1], "a") as f:  # the same job but another classifier
        f.attrs["quantize"] = "float"
        f.attrs["classifier_sha256"] = "0" * 64
    with pytest.raises(AttackFileError, match=r"classifier_sha256"):
        merge_attack_shards([plain[0], rounded[1]], tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists()
    merge_attack_shards(plain, tmp_path / "merged.h5")  # its own shards still merge
    assert (tmp_path / "merged.h5").exists()


# ----------------------------------------------------------------------------- 3. models that are not finite
class NaNOnGrid(torch.nn.Module):
    """Finite on random pixels, NaN on pixels of the 8-bit grid (every real image)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        on_grid = (x * 255 - torch.round(x * 255)).abs().flatten(1).amax(1) < 1e-4
        out = self.fc(x.flatten(1))
        return torch.where(on_grid[:, None], torch.full_like(out, float("nan")), out)


class Softmaxed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3072, 10)

    def forward(self, x):
        return torch.softmax(self.fc(x.flatten(1)), 1)


class Drifting(torch.nn.Module):
    """Eval-safe for its first three calls, then its output moves."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3072, 10)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.fc(x.flatten(1)) + (self.calls > 3).float()


@pytest.mark.parametrize(
    "model,message",
    [
        (NaNOnGrid, r"output holds NaN or inf for 64 of 64 images of the data set"),
        (Softmaxed, r"outputs probabilities \(each row in \[0, 1\], summing to 1\), not logits"),
        # refused when the file is read (round 3: forward changes its own buffer), before any call could show it
        (Drifting, r"reads attribute 'calls', which forward itself changes"),
    ],
)
def test_models_the_import_must_refuse(data, tmp_path, model, message):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model().eval()), str(path))
    out = (tmp_path / "out.pt", tmp_path / "metrics.json")
    with pytest.raises((ConfigError, PipelineFileError), match=message):
        import_classifier(CheckpointSource(path, sha256=file_sha256(path)), data, *out, device="cpu")
    assert not out[0].exists() and not out[1].exists()


def test_non_finite_logits_stop_prediction_attacks_and_purification(data, tmp_path):
    model = NaNOnGrid().eval()
    images = torch.from_numpy(np.full((4, 3, 32, 32), 128, np.uint8))
    with pytest.raises(
        NonFiniteOutput,
        match=r"the classifier's logits hold NaN or inf for 2 image\(s\), the first "
        r"image 0",
    ):
        predict(model, images, 2)
    with pytest.raises(
        NonFiniteOutput, match=r"fgsm eps=0.03, images 0\.\.19: the classifier's logits held NaN"
    ):
        attack_split(
            model,
            data,
            AttackJob(
                name="fgsm",
                spec={"class": "FGSM", "norm": "linf", "params": {}},
                eps=0.03,
                split="test",
                images=20,
                seed=0,
                batch_size=20,
            ),
            tmp_path / "a.h5",
            device="cpu",
        )
    assert not (tmp_path / "a.h5").exists()
    from advdefense.models import save_checkpoint
    from advdefense.models.autoencoder import ConvAutoencoder

    save_checkpoint(tmp_path / "ae.pt", "autoencoder", ConvAutoencoder())
    torch.jit.save(torch.jit.script(NaNEverywhere()), str(tmp_path / "nan.pt"))
    save_checkpoint(tmp_path / "clf.pt", "classifier", _external(tmp_path / "nan.pt"))
    with pytest.raises(NonFiniteOutput, match="the classifier's logits"):
        purify_clean(
            data,
            PurifierSetup("autoencoder", {}, {"autoencoder": tmp_path / "ae.pt"}),
            tmp_path / "clf.pt",
            "test",
            tmp_path / "p.h5",
            images=20,
            seed=0,
            device="cpu",
            batch_size=10,
        )
    assert not (tmp_path / "p.h5").exists()


class NaNEverywhere(torch.nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * float("nan")


def _external(path):
    from advdefense.models.external import ExternalClassifier

    return ExternalClassifier(torch.jit.load(str(path)), 10)


# ----------------------------------------------------------------------------- 4. the builder file is tracked
@pytest.mark.slow
def test_editing_the_builder_imports_the_classifier_again(smoke_config, tmp_path):
    (tmp_path / "builder.py").write_text(BUILDER)
    namespace: dict = {}
    exec(BUILDER, namespace)
    torch.save(namespace["build"]().state_dict(), tmp_path / "weights.pt")
    cfg = smoke_config
    cfg["classifier"] = {
        "source": "checkpoint",
        "checkpoint": {
            "path": str(tmp_path / "weights.pt"),
            "sha256": file_sha256(tmp_path / "weights.pt"),
            "builder": f"{tmp_path / 'builder.py'}:build",
        },
    }
    configfile = tmp_path / "byo.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    target = ("results/classifier/synthetic-smoke/metrics.json",)
    assert run_snakemake(tmp_path, configfile, targets=target).returncode == 0
    assert "Nothing to be done" in run_snakemake(tmp_path, configfile, "-n", targets=target).stdout
    (tmp_path / "builder.py").write_text(BUILDER + "\n# edited\n")
    proc = run_snakemake(tmp_path, configfile, "-n", targets=target)
    assert job_counts(proc.stdout) == {"import_classifier": 1}, proc.stdout[-2000:]


# ----------------------------------------------------------------------------- 5. the attack batch size
def test_the_attack_batch_size_is_a_result_setting(data, resnet, tmp_path):
    assert not is_runtime_key("attack_defaults.batch_size")
    model = load_classifier(resnet)
    files = {}
    for batch in (20, 10):
        files[batch] = tmp_path / f"b{batch}.h5"
        attack_split(
            model,
            data,
            AttackJob(name="pgd", spec=PGD, eps=0.03, split="test", images=40, seed=0, batch_size=batch),
            files[batch],
            device="cpu",
        )
    with h5py.File(files[20]) as a, h5py.File(files[10]) as b:
        assert a.attrs["batch_size"] == 20 and b.attrs["batch_size"] == 10  # the file says what made it
        assert not np.array_equal(a["adv"][()], b["adv"][()])  # other random starts: other adversarials


# ----------------------------------------------------------------------------- 6, 8-12: refused before any job
@pytest.mark.parametrize(
    "patch,message",
    [
        (
            {
                "attacks": {
                    "pgd_8bit": {"class": "LinfPGD", "norm": "linf", "quantize": "8bit", "epsilons": [0.003]}
                }
            },
            r"attacks\.pgd_8bit\.quantize: 8bit with epsilon 0\.003 \(below 1/255 = 0\.00392157\) rounds every adversarial "
            r"back to its clean image",
        ),
        ({"dataset": {"name": ".."}}, r"dataset\.name: '\.\.' starts with a dot"),
        (
            {"dataset": {"name": "synthetic-smoke-seed1"}},
            r"dataset\.name: 'synthetic-smoke-seed1' ends in -seed<s>, the "
            r"name of a run of `seeds`",
        ),
        (
            {"attacks": {"pgd": {"class": "LinfPGD", "norm": "linf", "restarts": 300, "epsilons": [0.03]}}},
            r"attacks\.pgd\.restarts: 300 is greater than the maximum of 100",
        ),
        (
            {"purification": {"adaptive": {"restarts": 300}}},
            r"purification\.adaptive\.restarts: 300 is greater than",
        ),
        (
            {"detection": {"aware": {"images": 50, "sanity_images": 80}}},
            r"detection\.aware\.sanity_images: 80 is more than the 50 images the detector-aware attack runs on",
        ),
    ],
)
def test_refused_before_any_job(smoke_config, patch, message):
    cfg = smoke_config
    for section, values in patch.items():
        if section == "attacks":
            cfg["attacks"] = values
            cfg["tables"] = {"table3": {"attacks": None}}
            cfg["purification"]["adaptive"]["params"] = {}
        else:
            for key, value in values.items():
                cfg[section][key] = (
                    {**cfg[section].get(key, {}), **value} if isinstance(value, dict) else value
                )
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


@pytest.mark.parametrize(
    "builder,message",
    [
        ("models/nope.py:build", r"classifier\.checkpoint\.builder: file models/nope\.py does not exist"),
        (
            "os:system",
            r"classifier\.checkpoint\.builder: os:system is a builtin_function_or_method, not a Python "
            r"function or nn\.Module class",
        ),
        (
            "{dir}/builder.py:nothing",
            r"builder\.py defines no function 'nothing' at its top level \(it defines Net, build\)",
        ),
    ],
)
def test_a_builder_that_is_not_one_is_refused_before_any_job(smoke_config, tmp_path, builder, message):
    (tmp_path / "builder.py").write_text(BUILDER)
    torch.save({}, tmp_path / "w.pt")
    smoke_config["classifier"] = {
        "source": "checkpoint",
        "checkpoint": {
            "path": str(tmp_path / "w.pt"),
            "sha256": file_sha256(tmp_path / "w.pt"),
            "builder": builder.format(dir=tmp_path),
        },
    }
    with pytest.raises(ConfigError, match=message):
        validate_config(smoke_config)


def test_sanity_row_reports_the_images_it_used():
    from advdefense.aware import run_aware_attacks
    from advdefense.detectors import DetectorContext, PCADetector
    from advdefense.plan.jobs import AwareRun

    torch.manual_seed(0)
    classifier = CifarResNet(8).eval()
    detector = PCADetector(
        {"skip_components": 2}, DetectorContext(0, torch.device("cpu"), Path(".")), "overall"
    )
    detector.fit(None, None, clean_pool=np.random.default_rng(0).random((40, 3, 2, 2)).astype(np.float32))
    detector.thresholds, detector.calibration_scale = {0.05: 1e9}, 1.0
    detector.context.models = {}
    settings = {
        "steps": 2,
        "restarts": 1,
        "lambdas": [0],
        "step_factor": 2.5,
        "kappa": 0.1,
        "batch_size": 10,
        "step_rules": ["sign"],
        "sanity_epsilon": 1.0,
        "sanity_images": 50,
        "sanity_steps": 2,
    }
    pixels = np.random.default_rng(1).random((12, 3, 32, 32)).astype(np.float32)
    detector.mean = np.zeros(3 * 32 * 32)
    detector.components = torch.zeros(1, 3 * 32 * 32)
    detector.std = torch.ones(1)
    rows = run_aware_attacks(
        AwareRun(settings, (0.03,), 0, 0.05), classifier, detector, pixels, np.arange(12) % 10, {}, "cpu"
    )
    assert rows[-1]["sanity"] and rows[-1]["images"] == 12  # not the 50 asked for


# ----------------------------------------------------------------------------- 7. every file reachable
@pytest.mark.slow
def test_a_missing_attack_file_is_made_again(smoke_run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(smoke_run, work, ignore=shutil.ignore_patterns(".snakemake"))
    (work / "results/attacks/synthetic-smoke/pgd/eps0.03/test.h5").unlink()
    proc = run_snakemake(work, work / "smoke.yaml", "-n")
    counts = job_counts(proc.stdout)
    assert counts.get("attack") == 1, proc.stdout[-3000:]


# ----------------------------------------------------------------------------- 13. CIFAR directories
def _cifar_dir(path: Path, names, layout: str = "cifar10") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if layout == "cifar10":
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(path / name, "wb") as f:
                pickle.dump(
                    {
                        "data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                        "labels": [i % 10 for i in range(20)],
                    },
                    f,
                )
        with open(path / "batches.meta", "wb") as f:
            pickle.dump({"label_names": names}, f)
    else:
        for name in ("train", "test"):
            with open(path / name, "wb") as f:
                pickle.dump(
                    {
                        "data": rng.integers(0, 256, (40, 3072), dtype=np.uint8),
                        "fine_labels": [i % 100 for i in range(40)],
                        "coarse_labels": [i % 20 for i in range(40)],
                    },
                    f,
                )
        with open(path / "meta", "wb") as f:
            pickle.dump(
                {"fine_label_names": names, "coarse_label_names": [f"s{k}".encode() for k in range(20)]}, f
            )
    return path


def test_cifar_directories_read_right_or_refused(tmp_path):
    ds = load_cifar_batches_dir(
        _cifar_dir(tmp_path / "c100", [f"f{k}".encode() for k in range(100)], "cifar100")
    )
    assert ds.class_names[:2] == ("f0", "f1")  # bytes names decoded, not "b'f0'"
    ds = load_cifar_batches_dir(_cifar_dir(tmp_path / "c10b", [f"c{k}".encode() for k in range(10)]))
    assert ds.class_names[0] == "c0"
    both = _cifar_dir(
        _cifar_dir(tmp_path / "both", [f"c{k}" for k in range(10)]), [f"f{k}" for k in range(100)], "cifar100"
    )
    with pytest.raises(
        ConfigError, match=r"holds both a cifar-10-batches-py layout .* and a cifar-100-python one"
    ):
        load_cifar_batches_dir(both)
    c10 = _cifar_dir(tmp_path / "c10", [f"c{k}" for k in range(10)])
    with pytest.raises(
        ConfigError,
        match=r"dataset\.labels: coarse \(the 20 superclasses\) exists only for CIFAR-100, "
        r"but .*c10 is a CIFAR-10 directory",
    ):
        validate_config({"dataset": {"source": "local", "path": str(c10), "labels": "coarse"}})
    with pytest.raises(ConfigError, match=r"dataset\.labels: coarse .* but source 'cifar10'"):
        build_dataset({"source": "cifar10", "root": str(tmp_path), "labels": "coarse"}, 0)


# ----------------------------------------------------------------------------- 14. the published flow
def test_published_flow_files_that_must_be_refused(reference, tmp_path):  # noqa: F811 (the fixture)
    state = dict(reference["state"])
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    ckpt, hp = _published_files(tmp_path, state, reference["hparams"])
    with pytest.raises(
        CheckpointError, match=r"glow_affine_coupling\.pt: 1 weight tensor\(s\) hold NaN or inf"
    ):
        load_published_glow(ckpt, hp)
    ckpt, hp = _published_files(tmp_path, reference["state"], {**reference["hparams"], "K": "1"})
    with pytest.raises(
        CheckpointError, match=r"hparams\.json: K must be a positive integer, found '1' \(str\)"
    ):
        load_published_glow(ckpt, hp)
    ckpt, hp = _published_files(
        tmp_path, reference["state"], {**reference["hparams"], "image_shape": [64, 64, 3]}
    )
    with pytest.raises(CheckpointError, match=r"hparams\.json: image_shape must be \[32, 32, 3\]"):
        load_published_glow(ckpt, hp)
    ckpt, hp = _published_files(tmp_path, reference["state"], reference["hparams"])
    with pytest.raises(
        CheckpointError,
        match=r"glow_affine_coupling\.pt: not a JSON text file .*are checkpoint and "
        r"hparams swapped\?",
    ):
        load_published_glow(hp, ckpt)


# ----------------------------------------------------------------------------- 15. where targets go
def test_readme_puts_targets_first_and_that_command_works(tmp_path):
    readme = (REPO / "README.md").read_text()
    assert "**Targets go first.**" in readme
    example = next(line for line in readme.splitlines() if line.startswith("snakemake results/"))
    words = example.split()
    assert words[1].startswith("results/") and words.index("--resources") > 1
    proc = run_snakemake(
        tmp_path, REPO / "config/smoke.yaml", "-n", targets=("results/data/synthetic-smoke.h5",)
    )
    assert proc.returncode == 0 and job_counts(proc.stdout) == {"dataset": 1}
