"""Checkpoints as people bring them (issue 44, item 1): the containers and wrapper prefixes of the common training
scripts are recognised, and a mismatch is explained in five lines by `advdefense-check-config`, before any job."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from advdefense.classifier import import_classifier, load_classifier
from advdefense.config import main as check_config
from advdefense.data import make_synthetic, write_dataset_h5
from advdefense.errors import PipelineFileError
from advdefense.models.external import fit_state_dict
from advdefense.plan.jobs import CheckpointSource
from advdefense.plan.names import file_sha256
from conftest import REPO

BUILDER = """
import sys
sys.path.insert(0, {src!r})
from advdefense.models.resnet import CifarResNet

def build():
    return CifarResNet({depth})
"""
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.h5"
    write_dataset_h5(make_synthetic(200, 100, seed=3), path)
    return path


def _builder(tmp_path: Path, depth: int = 8) -> str:
    (tmp_path / f"resnet{depth}.py").write_text(BUILDER.format(src=str(REPO / "src"), depth=depth))
    return f"{tmp_path / f'resnet{depth}.py'}:build"


def _data_parallel_checkpoint(tmp_path: Path, depth: int = 8) -> tuple[Path, torch.nn.Module]:
    """Saved the way the most used CIFAR ResNet repositories save: DataParallel's state dict in a dict."""
    from advdefense.models.resnet import CifarResNet

    torch.manual_seed(0)
    model = CifarResNet(depth).eval()
    path = tmp_path / f"checkpoint{depth}.th"
    torch.save({"state_dict": torch.nn.DataParallel(model).state_dict(), "best_prec1": 91.25}, path)
    return path, model


def test_a_data_parallel_checkpoint_imports_with_no_wrapper(data, tmp_path):
    path, original = _data_parallel_checkpoint(tmp_path)
    out = (tmp_path / "model.pt", tmp_path / "metrics.json")
    import_classifier(
        CheckpointSource(path, sha256=file_sha256(path), builder=_builder(tmp_path), **IMAGENET),
        data,
        *out,
        device="cpu",
    )
    x = torch.rand(4, 3, 32, 32)
    mean, std = (torch.tensor(IMAGENET[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        assert torch.allclose(load_classifier(out[0])(x), original((x - mean) / std), atol=1e-4)


def test_containers_and_prefixes():
    from advdefense.models.resnet import CifarResNet

    model = CifarResNet(8)
    plain = model.state_dict()
    for wrapped, how in (
        (plain, "a plain state dict"),
        ({"model_state_dict": plain, "epoch": 3}, "the weights under 'model_state_dict'"),
        (
            {"net": {f"module.{k}": v for k, v in plain.items()}},
            "the weights under 'net', the prefix 'module.' stripped",
        ),
        ({f"_orig_mod.{k}": v for k, v in plain.items()}, "the prefix '_orig_mod.' stripped"),
    ):
        state, said = fit_state_dict(model, wrapped, "ckpt", "b:build")
        assert set(state) == set(plain) and said == how


def test_a_mismatch_is_explained_in_five_lines_at_config_time(tmp_path, smoke_config, capsys):
    path, _ = _data_parallel_checkpoint(tmp_path, depth=14)  # another depth than the builder's
    smoke_config["classifier"] = {
        "source": "checkpoint",
        "checkpoint": {"path": str(path), "sha256": file_sha256(path), "builder": _builder(tmp_path, 8)},
    }
    configfile = tmp_path / "brought.yaml"
    configfile.write_text(yaml.safe_dump(smoke_config))
    assert check_config([str(configfile)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and "(the weights under 'state_dict', the prefix 'module.' stripped)" in err[0]
    assert "likely cause: the file has more layers than the model: another depth" in err[0]
    assert err[1].startswith("  missing from the file (0): none")
    assert err[2].startswith("  unexpected in the file (") and "(+" in err[2]  # the first five, then a count
    good, _ = _data_parallel_checkpoint(tmp_path, depth=8)
    smoke_config["classifier"]["checkpoint"].update(path=str(good), sha256=file_sha256(good))
    configfile.write_text(yaml.safe_dump(smoke_config))
    assert check_config([str(configfile)]) == 0
    assert "tensors fit the model of" in capsys.readouterr().out


def test_likely_causes(tmp_path):
    from advdefense.models.resnet import CifarResNet

    model = CifarResNet(8)
    head = {
        k: (torch.zeros(100, v.shape[1]) if k == "fc.weight" else v) for k, v in model.state_dict().items()
    }
    head = {k: (torch.zeros(100) if k == "fc.bias" else v) for k, v in head.items()}
    with pytest.raises(
        PipelineFileError, match=r"a head for another number of classes\n.*\n.*\n  wrong shape \(2\)"
    ):
        fit_state_dict(model, head, "ckpt", "b:build")
    wider = CifarResNet(8, width=32).state_dict()
    with pytest.raises(PipelineFileError, match=r"another width\n  missing from the file \(0\)"):
        fit_state_dict(model, wider, "ckpt", "b:build")
    prefixed = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(PipelineFileError, match=r"every key of the file starts with 'backbone\.'"):
        fit_state_dict(model, prefixed, "ckpt", "b:build")
