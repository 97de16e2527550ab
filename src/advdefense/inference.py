"""How every stage evaluates and attacks a trained network: one evaluation copy, one `predict`.

The classifier stage's test accuracy, the attack stage's stored predictions, the purification
tables and the adaptive attack all run the *evaluation copy* of a model: batch norm folded into
the convolutions (the same affine map, fewer memory passes), parameters frozen, eval mode,
channels-last layout for the convolutional networks. Using one copy everywhere means a
prediction stored by one stage is the prediction every other stage would compute.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .errors import PipelineFileError
from .models.autoencoder import ConvAutoencoder
from .models.resnet import CifarResNet, fold_batchnorm


def to_float_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [0, 1]; float input is returned as float32 unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def channels_last(model: nn.Module) -> nn.Module:
    """NHWC layout for the convolutions of a feed-forward CNN (the same arithmetic, faster kernels:
    on a 2-core CPU a ResNet-20 training step is about 1.2x faster, see benchmarks/README.md)."""
    return model.to(memory_format=torch.channels_last)


def evaluation_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """The evaluation copy of `model`, on `device`: CIFAR ResNets with batch norm folded, ResNets and
    autoencoders channels-last, a model made of parts (`purifiers.Defended`) by its `evaluation_copy()` from
    its parts' copies, anything else copied as it is; eval mode, parameters frozen. `model` itself is never
    changed; an evaluation copy passed in is returned as is."""
    if getattr(model, "is_evaluation_copy", False):
        return model.to(device) if device is not None else model
    if isinstance(model, CifarResNet):
        out = channels_last(fold_batchnorm(model))
    elif isinstance(model, ConvAutoencoder):
        out = channels_last(copy.deepcopy(model))
    elif callable(getattr(model, "evaluation_copy", None)):
        out = model.evaluation_copy()
    else:
        with torch.no_grad():  # a TorchScript module's deepcopy clones its parameters through autograd
            out = copy.deepcopy(model)
    out = (out.to(device) if device is not None else out).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    out.is_evaluation_copy = True
    return out


class NonFiniteOutput(PipelineFileError):
    """A model gave NaN or inf where every stage needs finite numbers (logits, purified images)."""


def check_finite(values: torch.Tensor, what: str, first: int = 0) -> None:
    """Raise NonFiniteOutput naming the first image (`first` + row) whose `values` hold NaN or inf."""
    bad = ~torch.isfinite(values.flatten(1)).all(1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise NonFiniteOutput(
            f"{what} hold NaN or inf for {int(bad.sum())} image(s), the first image {first + i}; "
            f"every stage needs finite outputs (argmax of NaN is a meaningless class)"
        )


@torch.inference_mode()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Class predictions (on the CPU) of the evaluation copy of `model` for uint8 or [0, 1] float images."""
    device = device or next(model.parameters()).device
    model = evaluation_model(model, device)
    out = []
    for s in range(0, len(images), batch_size):
        logits = model(to_float_pixels(images[s : s + batch_size].to(device)))
        check_finite(logits, "the classifier's logits", s)
        out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


class LogitRecorder(nn.Module):
    """Runs `model` and keeps the input and logits of the first and of the latest forward pass.

    An attack ends with a forward pass on its own output (to tell which images it fooled) and
    often starts with one on the clean images; the attack stage reads its stored predictions from
    these instead of running the network twice more. Inputs are copied, so a caller's later
    in-place change cannot make a stale record look current."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.first: tuple[torch.Tensor, torch.Tensor] | None = None
        self.latest: tuple[torch.Tensor, torch.Tensor] | None = None
        self.finite: torch.Tensor | None = (
            None  # all logits since reset() finite (on the device: no sync per pass)
        )

    def reset(self) -> None:
        self.first = self.latest = self.finite = None

    def check_finite(self, what: str) -> None:
        """Raise NonFiniteOutput if any forward pass since `reset()` gave NaN or inf logits."""
        if self.finite is not None and not bool(self.finite):
            raise NonFiniteOutput(
                f"{what}: the classifier's logits held NaN or inf in a forward pass of the attack; "
                f"every stage needs finite logits"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        ok = torch.isfinite(logits.detach()).all()
        self.finite = ok if self.finite is None else self.finite & ok
        record = (x.detach().clone(), logits.detach())
        if self.first is None:
            self.first = record
        self.latest = record
        return logits

    def recorded_predictions(self, x: torch.Tensor) -> torch.Tensor | None:
        """argmax of the recorded logits for exactly this input, or None if no pass saw it."""
        for record in (self.latest, self.first):
            if record is not None and torch.equal(record[0], x):  # False for another shape too
                return record[1].argmax(1)
        return None
