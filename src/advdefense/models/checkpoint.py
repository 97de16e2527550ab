"""One checkpoint format for every model: {format, kind, arch, state_dict, metadata}.

Everything in it is a tensor, str, number, bool, list or dict, so it loads with
``torch.load(path, weights_only=True)``. ``arch`` is the constructor's keyword arguments
plus ``name``; loading rebuilds the model from it and refuses mismatching weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import PipelineFileError
from ..h5io import atomic_path
from .archives import check_archive
from .autoencoder import ConvAutoencoder
from .detectors import LatentMLP, PixelCNNDetector
from .external import ExternalClassifier
from .glow import Glow
from .resnet import CifarResNet

CHECKPOINT_FORMAT = "advdefense-checkpoint-v1"


class CheckpointError(PipelineFileError):
    """A checkpoint file is missing, of another kind, or does not match the expected model."""


def _builders() -> dict[str, Callable[..., nn.Module]]:
    return {
        "resnet": CifarResNet,
        "glow": Glow,
        "autoencoder": ConvAutoencoder,
        "latent_mlp": LatentMLP,
        "pixel_cnn": PixelCNNDetector,
    }


def build_model(arch: dict) -> nn.Module:
    arch = dict(arch)
    name = arch.pop("name", None)
    builders = _builders()
    if name not in builders:
        raise CheckpointError(f"unknown architecture name {name!r} (known: {sorted(builders)})")
    return builders[name](**arch)


def save_checkpoint(
    path: str | Path, kind: str, model: nn.Module, metadata: dict[str, Any] | None = None
) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "arch": dict(model.arch),
        "state_dict": model.checkpoint_state()
        if hasattr(model, "checkpoint_state")
        else {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | Path, kind: str, expected_arch: dict | None = None, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict]:
    """Rebuild the model stored at `path`; returns (model in eval mode, metadata)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_archive(path, str(path))  # declared sizes, before torch allocates them
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a checkpoint of this pipeline (expected format {CHECKPOINT_FORMAT})"
        )
    if payload["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {payload['kind']!r} model, expected a {kind!r} model")
    arch = payload["arch"]
    if expected_arch is not None:
        diff = {k: (arch.get(k), v) for k, v in expected_arch.items() if arch.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: file has {a!r}, config wants {b!r}" for k, (a, b) in diff.items())
            raise CheckpointError(f"{path}: architecture does not match the configuration ({detail})")
    try:
        if arch.get("name") == "external":  # a user's classifier: its stored TorchScript, never code it names
            try:
                model = ExternalClassifier.from_checkpoint(arch, payload["state_dict"])
            except PipelineFileError as exc:
                raise CheckpointError(f"{path}: {exc}") from None
        else:
            model = build_model(arch)
            model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture {arch}: {exc}") from exc
    return model.to(map_location).eval(), payload.get("metadata", {})
