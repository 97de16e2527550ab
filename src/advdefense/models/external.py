"""A classifier the user brings (`classifier.source: checkpoint`): a TorchScript file, or a builder
function plus a state dict, wrapped so that it takes pixels in [0, 1] like every model of the pipeline.

In the pipeline's checkpoint format (`checkpoint.py`) it is stored self-contained, as a TorchScript
archive in a uint8 tensor: arch {"name": "external", "format": "torchscript", "source_format", "mean",
"std", "num_classes"}, so the checkpoint still loads with ``torch.load(weights_only=True)``. A builder
model is traced into TorchScript when it is imported (and the trace checked against it on real images):
**a checkpoint never names code to run**. Every later job loads the checkpoint without the config; a
checkpoint that asked for a builder (`module:function`) could make it import and call anything.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, PipelineFileError
from ..plan.builder_spec import import_builder


def build_from_builder(spec: str) -> nn.Module:
    model = import_builder(spec)()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"classifier.checkpoint.builder: {spec} returned a {type(model).__name__}, not an nn.Module"
        )
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
            raise PipelineFileError(
                f"{path}: not a TorchScript file ({type(exc).__name__}: {str(exc)[:200]}); for a "
                "state dict, set classifier.checkpoint.builder"
            ) from exc
    model = build_from_builder(builder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PipelineFileError(
            f"{path}: not a state dict loadable with weights_only=True "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise PipelineFileError(
            f"{path}: its weights do not fit the model of {builder}: {str(exc)[:300]}"
        ) from exc
    return model, "state_dict"


class ExternalClassifier(nn.Module):
    """`model((x - mean) / std)` for pixels x in [0, 1] (no normalisation where mean/std are None)."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        source_format: str = "torchscript",
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ):
        super().__init__()
        self.model = model
        self.arch = {
            "name": "external",
            "format": "torchscript",
            "source_format": source_format,
            "mean": mean,
            "std": std,
            "num_classes": num_classes,
        }
        shift = torch.tensor(mean if mean is not None else [0.0, 0.0, 0.0]).view(1, 3, 1, 1)
        scale = torch.tensor(std if std is not None else [1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        self.register_buffer("mean", shift, persistent=False)
        self.register_buffer("std", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What the pipeline's checkpoint stores: the TorchScript archive as bytes."""
        buffer = io.BytesIO()
        torch.jit.save(self.model, buffer)
        return {"torchscript": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)}

    @classmethod
    def from_checkpoint(cls, arch: dict, state: dict[str, torch.Tensor]) -> ExternalClassifier:
        """The stored model; a checkpoint that names code to run (a builder) instead of holding its model is
        refused without running anything."""
        if arch.get("format") != "torchscript" or arch.get("builder") is not None:
            raise PipelineFileError(
                f"the checkpoint names code to build its model (builder {arch.get('builder')!r}, format "
                f"{arch.get('format')!r}) instead of holding it; a checkpoint never names code to run, so it is "
                f"refused: import the classifier again (classifier.source: checkpoint) to store it self-contained"
            )
        if not isinstance(state.get("torchscript"), torch.Tensor):
            raise PipelineFileError("external classifier checkpoint without its TorchScript archive")
        model = torch.jit.load(io.BytesIO(state["torchscript"].numpy().tobytes()), map_location="cpu")
        return cls(
            model,
            arch["num_classes"],
            arch.get("source_format", "torchscript"),
            arch.get("mean"),
            arch.get("std"),
        )


def traced(model: nn.Module, images: torch.Tensor) -> torch.jit.ScriptModule:
    """`model` (eval mode) traced into TorchScript on `images`, checked to give the same logits as the model on
    them: what a builder model is stored as, so that no later job calls the builder."""
    model.eval()
    with torch.no_grad():
        try:
            script = torch.jit.trace(model, images[:8], check_trace=False)
        except Exception as exc:
            raise ConfigError(
                f"classifier.checkpoint.builder: the model cannot be traced into TorchScript "
                f"({type(exc).__name__}: {str(exc)[:200]}); export it yourself with "
                f"torch.jit.script or torch.jit.trace and bring that file without a builder"
            ) from exc
        expected, found = model(images), script(images)
    if not torch.allclose(found, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max().clamp_min(1.0))):
        raise ConfigError(
            "classifier.checkpoint.builder: the model's TorchScript trace gives other logits than the "
            "model itself (data-dependent control flow?); export it yourself with torch.jit.script and "
            "bring that file without a builder"
        )
    return script


CHECK_CALLS = 6  # calls on the same images, spaced by calls on other images: an output that drifts is refused


@torch.no_grad()
def check_classifier_model(
    model: nn.Module, num_classes: int, images: torch.Tensor | None = None, seed: int = 0
) -> None:
    """Refuse a model that does not give N x `num_classes` finite logits for pixels in [0, 1] (random ones, and
    `images`: real images of the data set, on the 8-bit grid like every image the pipeline feeds it), that gives
    probabilities instead of logits, or that is not in eval-safe form: in eval mode, an image's output must not
    depend on the other images of its batch (batch norm in training mode) nor change from call to call (dropout,
    noise, a state that changes after the first calls: checked over CHECK_CALLS spaced calls)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(4, 3, 32, 32, generator=generator)
    real = noise if images is None else images.float()
    for what, x in (("4 random images", noise), (f"{len(real)} images of the data set", real)):
        try:
            out = model(x)
        except Exception as exc:
            raise ConfigError(
                f"classifier.checkpoint: the model fails on {what} of 3 x 32 x 32 pixels in [0, 1] "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc
        if not torch.is_tensor(out) or tuple(out.shape) != (len(x), num_classes):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ConfigError(
                f"classifier.checkpoint: the model's output for {what} is {shape}, expected "
                f"{len(x)} x {num_classes} (N x classes: the data set has {num_classes} classes)"
            )
        if not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(1).sum())
            raise ConfigError(
                f"classifier.checkpoint: the model's output holds NaN or inf for {bad} of {what}; "
                f"every stage needs finite logits"
            )
    reference = model(real)
    if bool(((reference >= 0) & (reference <= 1)).all()) and torch.allclose(
        reference.sum(1), torch.ones(len(real)), atol=1e-4
    ):
        raise ConfigError(
            "classifier.checkpoint: the model outputs probabilities (each row in [0, 1], summing to 1), "
            "not logits; the attacks' losses need logits: drop its final softmax"
        )
    drifted = False
    for _ in range(CHECK_CALLS):
        model(torch.rand(len(real), 3, 32, 32, generator=generator))  # other images between the calls
        drifted |= not torch.allclose(model(real), reference, atol=1e-5, rtol=1e-5)
    alone = model(real[:1])
    if drifted or not torch.allclose(reference[:1], alone, atol=1e-4, rtol=1e-4):
        raise ConfigError(
            "classifier.checkpoint: the model is not in eval-safe form: in eval mode its output for "
            "an image changes between calls or depends on the other images of the batch "
            "(dropout or noise, a state that changes with use, or batch norm using batch statistics); "
            "export it in eval mode"
        )
