"""A classifier the user brings (`classifier.source: checkpoint`): a TorchScript file, or a builder
function plus a state dict, wrapped so that it takes pixels in [0, 1] like every model of the pipeline.

In the pipeline's checkpoint format (`checkpoint.py`) it is stored self-contained: arch
{"name": "external", "format": "torchscript" | "state_dict", "builder", "mean", "std", "num_classes"};
the TorchScript archive travels as a uint8 tensor, a builder model as its state dict (rebuilt by
calling the builder again), so the checkpoint still loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, PipelineFileError


def import_builder(spec: str):
    """The function named by "package.module:function" or "path/to/file.py:function"."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise ConfigError(f"classifier.checkpoint.builder: {spec!r} is not of the form 'module:function' "
                          "or 'path/to/file.py:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"classifier.checkpoint.builder: file {path} does not exist")
            loader_spec = importlib.util.spec_from_file_location(f"advdefense_builder_{path.stem}", path)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"classifier.checkpoint.builder: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ConfigError(f"classifier.checkpoint.builder: {module_name} has no function {function!r}")
    return builder


def build_from_builder(spec: str) -> nn.Module:
    model = import_builder(spec)()
    if not isinstance(model, nn.Module):
        raise ConfigError(f"classifier.checkpoint.builder: {spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def load_user_model(path: str | Path, builder: str | None) -> tuple[nn.Module, str]:
    """The user's model from `path` and the format it came in ('torchscript' or 'state_dict')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"classifier.checkpoint.path: file {path} does not exist")
    if builder is None:
        try:
            return torch.jit.load(str(path), map_location="cpu"), "torchscript"
        except Exception as exc:
            raise PipelineFileError(f"{path}: not a TorchScript file ({type(exc).__name__}: {str(exc)[:200]}); for a "
                                    "state dict, set classifier.checkpoint.builder") from exc
    model = build_from_builder(builder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PipelineFileError(f"{path}: not a state dict loadable with weights_only=True "
                                f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise PipelineFileError(f"{path}: its weights do not fit the model of {builder}: {str(exc)[:300]}") from exc
    return model, "state_dict"


class ExternalClassifier(nn.Module):
    """`model((x - mean) / std)` for pixels x in [0, 1] (no normalisation where mean/std are None)."""

    def __init__(self, model: nn.Module, num_classes: int, fmt: str, builder: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.model = model
        self.arch = {"name": "external", "format": fmt, "builder": builder, "mean": mean, "std": std,
                     "num_classes": num_classes}
        shift = torch.tensor(mean if mean is not None else [0.0, 0.0, 0.0]).view(1, 3, 1, 1)
        scale = torch.tensor(std if std is not None else [1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        self.register_buffer("mean", shift, persistent=False)
        self.register_buffer("std", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What the pipeline's checkpoint stores: the TorchScript archive as bytes, or the state dict."""
        if self.arch["format"] == "torchscript":
            buffer = io.BytesIO()
            torch.jit.save(self.model, buffer)
            return {"torchscript": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)}
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    @classmethod
    def from_checkpoint(cls, arch: dict, state: dict[str, torch.Tensor]) -> "ExternalClassifier":
        if arch.get("format") == "torchscript":
            if "torchscript" not in state:
                raise PipelineFileError("external classifier checkpoint without its TorchScript archive")
            model = torch.jit.load(io.BytesIO(state["torchscript"].numpy().tobytes()), map_location="cpu")
        else:
            model = build_from_builder(arch["builder"])
            model.load_state_dict(state, strict=True)
        return cls(model, arch["num_classes"], arch["format"], arch.get("builder"), arch.get("mean"), arch.get("std"))


@torch.no_grad()
def check_classifier_model(model: nn.Module, num_classes: int, seed: int = 0) -> None:
    """Refuse a model that does not give N x `num_classes` finite logits for pixels in [0, 1], or that is
    not in eval-safe form: in eval mode, an image's output must not depend on the other images of its
    batch (batch norm in training mode) nor change from call to call (dropout, noise)."""
    model.eval()
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    try:
        out = model(x)
    except Exception as exc:
        raise ConfigError(f"classifier.checkpoint: the model fails on a batch of 4 images of 3 x 32 x 32 pixels "
                          f"in [0, 1] ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not torch.is_tensor(out) or tuple(out.shape) != (4, num_classes):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ConfigError(f"classifier.checkpoint: the model's output for 4 images is {shape}, expected "
                          f"4 x {num_classes} (N x classes: the data set has {num_classes} classes)")
    if not torch.isfinite(out).all():
        raise ConfigError("classifier.checkpoint: the model's output holds NaN or inf")
    again, alone = model(x), model(x[:1])
    if not torch.allclose(out, again, atol=1e-5) or not torch.allclose(out[:1], alone, atol=1e-4, rtol=1e-4):
        raise ConfigError("classifier.checkpoint: the model is not in eval-safe form: in eval mode its output for "
                          "an image changes between calls or depends on the other images of the batch "
                          "(dropout or noise, or batch norm using batch statistics); export it in eval mode")
