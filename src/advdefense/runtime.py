"""Where a job runs: the `device` setting resolved to a torch device."""

from __future__ import annotations

import re

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """Map the `device` config value to a torch.device; unknown or unavailable devices raise ConfigError."""
    if not re.fullmatch(r"auto|cpu|cuda|cuda:[0-9]+|mps", name):
        raise ConfigError(f"device: unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device: 'mps' requested but MPS is not available on this machine")
    return torch.device(name)
