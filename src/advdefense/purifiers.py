"""Purifiers: one base class, one registry (`purification.methods`; null: every registered one).

A purifier is a `torch.nn.Module` from images in [0, 1] (N x 3 x 32 x 32) to images of the same shape in
[0, 1]; the classifier sees its output. Its forward pass is both the purification and what the adaptive attack
differentiates: a non-differentiable step declares `gradient = "bpda"` and wraps that step in
`squeezers.straight_through` (its value forward, the identity backward: Athalye, Carlini & Wagner 2018), so the
values are the true purifier's and the gradient the declared approximation. A purifier that draws at random
declares `random = True`: the adaptive attack then runs through `ExpectationOverTransforms` (EOT), which
averages the classifier's logits over `purification.adaptive.eot_samples` draws. `check_gradient` compares a
purifier's autograd gradient with finite differences: a purifier that declares "exact" but has a step without a
useful gradient fails it (tests/test_purifiers.py runs it on every registered one).

Adding a purifier: one subclass with `name`, `title` (and `reference`, `anchor`, `needs`, `gradient`, `random`,
`cost`, `settings_schema` as class attributes), decorated with `@register`; `__init__(settings, models)` gets
its block `purification.<name>` and {model name: checkpoint path} of what it `needs`. The built-in purifiers
are declared in `plan.purifier_specs` (torch-free); `register` gives a built-in class its declaration and adds
that of any other class.
"""

from __future__ import annotations

import io
from dataclasses import fields

import numpy as np
import torch
from PIL import Image

from .errors import ConfigError
from .inference import check_finite, evaluation_model
from .models import load_checkpoint
from .models.autoencoder import ConvAutoencoder
from .plan.declarations import add_to_registry, remove_from_registry
from .plan.plugins import load_plugin_modules
from .plan.purifier_specs import BUILT_IN, PURIFIERS, PurifierSpec, purifier_kind, purifier_spec
from .squeezers import median_smooth, reduce_bit_depth, straight_through

REGISTRY: dict[str, type[Purifier]] = {}


def register(cls):
    """Add a purifier class to REGISTRY. A built-in one takes its declaration (`plan.PURIFIERS[name]`); one
    defined elsewhere declares itself by its class attributes, and its declaration joins `plan.PURIFIERS`."""
    spec = add_to_registry(REGISTRY, cls, PURIFIERS, PurifierSpec, "purifier")
    for f in fields(PurifierSpec):
        setattr(cls, f.name, getattr(spec, f.name))
    return cls


def unregister(name: str) -> None:
    """Remove a purifier added by `register` (and its declaration, unless it is a built-in one)."""
    remove_from_registry(REGISTRY, name, PURIFIERS, BUILT_IN)


class Purifier(torch.nn.Module):
    """Base class: `forward(x)` purifies a batch in [0, 1] (see the module docstring)."""

    name: str
    title: str
    spec: PurifierSpec

    def __init__(self, settings: dict, models: dict):
        super().__init__()
        self.settings = dict(settings)


def build_purifier(name: str, settings: dict, models: dict, device="cpu") -> Purifier:
    """An evaluation-mode instance of the registered purifier `name` on `device`, with its settings block and
    {model name: checkpoint path} of the models it `needs` (a missing one is an error naming it)."""
    purifier_spec(name)  # an unknown name: a ConfigError naming purification.methods
    cls = REGISTRY[purifier_kind(name)]  # a sweep point's: the autoencoder purifier (plan.purifier_specs)
    missing = sorted(set(cls.spec.needs) - set(models))
    if missing:
        raise ConfigError(f"purifier {name!r} needs the model(s) {missing}; none was given")
    purifier = cls(settings, {k: models[k] for k in cls.spec.needs})
    purifier = purifier.to(device).eval()
    for p in purifier.parameters():
        p.requires_grad_(False)
    return purifier


def checked_output(name: str, x: torch.Tensor, out: torch.Tensor, start: int = 0) -> torch.Tensor:
    """`out`, the purifier `name`'s output for `x`; an error naming the purifier where it has another shape,
    is not finite (`inference.NonFiniteOutput`) or leaves [0, 1] (the classifier reads it as an image)."""
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(
            f"purifier {name!r}: output shape {tuple(out.shape)} for input shape {tuple(x.shape)}"
        )
    check_finite(out, f"the outputs of purifier {name!r}", start)
    low, high = float(out.min()), float(out.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"purifier {name!r}: output leaves [0, 1] (min {low:.4g}, max {high:.4g}, images {start} to "
            f"{start + len(x) - 1}); a purifier returns images in [0, 1]"
        )
    return out


class Defended(torch.nn.Module):
    """classifier(purifier(x)): the defended model, differentiable as the purifier declares (adaptive attacks)."""

    def __init__(self, purifier: torch.nn.Module, classifier: torch.nn.Module):
        super().__init__()
        self.purifier = purifier
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purifier(x))

    def evaluation_copy(self) -> Defended:
        """What `inference.evaluation_model` makes of it: the same composition of the parts' evaluation copies."""
        return Defended(evaluation_model(self.purifier), evaluation_model(self.classifier))


class ExpectationOverTransforms(torch.nn.Module):
    """The logits of `model` averaged over `samples` forward passes: for a random purifier, their gradient is the
    mean over draws (EOT, Athalye et al. 2018), what an attack that knows the randomness follows."""

    draws_at_random = True  # another seed gives other adversarials (attack_methods.Restarts)

    def __init__(self, model: torch.nn.Module, samples: int):
        super().__init__()
        if samples < 1:
            raise ValueError(f"EOT samples {samples} < 1")
        self.model = model
        self.samples = samples

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(x) for _ in range(self.samples)]).mean(0)


def adaptive_model(purifier: Purifier, classifier: torch.nn.Module, eot_samples: int) -> torch.nn.Module:
    """What the adaptive attack differentiates: classifier(purifier(x)), under EOT where the purifier is random."""
    defended = Defended(purifier, classifier)
    return ExpectationOverTransforms(defended, eot_samples) if purifier.spec.random else defended


def check_gradient(purifier: torch.nn.Module, x: torch.Tensor, *, h: float = 1e-4, seed: int = 0) -> float:
    """Relative error ||J d - (f(x + h d) - f(x - h d)) / 2h|| / max of the two norms, in float64: the change of
    the purifier's output along a random sign direction d as its autograd Jacobian J predicts it, against the
    change it makes over a step of h. Near 0 for a purifier with a true gradient (smooth, or piecewise linear:
    few kinks lie within h); near 1 for one with a step whose gradient is zero almost everywhere (rounding,
    JPEG quantisation) but whose output moves with the input, or whose backward is not its gradient (BPDA)."""
    g = torch.Generator().manual_seed(seed)
    x = x.detach().double().clamp(h, 1 - h)
    d = torch.randint(0, 2, x.shape, generator=g).double() * 2 - 1
    purifier = purifier.double()
    try:
        _, analytic = torch.autograd.functional.jvp(purifier, x, d)
        with torch.no_grad():
            numeric = (purifier(x + h * d) - purifier(x - h * d)) / (2 * h)
    finally:
        purifier.float()
    scale = max(float(analytic.norm()), float(numeric.norm()), 1e-12)
    return float((analytic - numeric).norm()) / scale


# ----------------------------------------------------------------------------- the built-in purifiers
def autoencoder_arch(settings: dict) -> dict:
    """The checkpoint architecture of the `autoencoder` settings."""
    return {
        "name": "autoencoder",
        "widths": list(settings["widths"]),
        "kernel": settings["kernel"],
        "activation": settings["activation"],
        "batch_norm": settings["batch_norm"],
    }


def load_autoencoder(path, device="cpu", settings: dict | None = None) -> ConvAutoencoder:
    """Load an autoencoder checkpoint; with `settings`, refuse one whose architecture differs from them."""
    expected = autoencoder_arch(settings) if settings is not None else None
    model, _ = load_checkpoint(path, "autoencoder", expected, map_location=device)
    return model


@register
class AutoencoderPurifier(Purifier):
    """The paper's purifier: the convolutional autoencoder of the `autoencoder` stage (its checkpoint)."""

    name = "autoencoder"

    def __init__(self, settings: dict, models: dict):
        super().__init__(settings, models)
        # channels-last, frozen: as every stage evaluates it
        self.model = evaluation_model(load_autoencoder(models["autoencoder"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of `x` (in [0, 1]) to 8 bits, JPEG-encoded at `quality` by Pillow (4:2:0 chroma subsampling,
    as Pillow's default), decoded, back to [0, 1]."""
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0


@register
class JpegPurifier(Purifier):
    """JPEG compression at `quality` (Guo et al. 2018 use 75); no gradient: BPDA with the identity."""

    name = "jpeg"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return straight_through(x, jpeg_round_trip(x, self.settings["quality"]))


@register
class BitDepthPurifier(Purifier):
    """Pixels rounded to 2^bits levels (Xu et al. 2018: 5 bits on CIFAR-10); BPDA with the identity."""

    name = "bit_depth"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reduce_bit_depth(x, self.settings["bits"])


@register
class MedianPurifier(Purifier):
    """size x size median smoothing (Xu et al. 2018: 2 x 2 on CIFAR-10); its true (piecewise-linear) gradient."""

    name = "median"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return median_smooth(x, self.settings["size"])


# the plug-in files last: their classes register with the built-ins above (advdefense.plan.plugins)
load_plugin_modules()
