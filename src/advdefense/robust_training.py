"""How the classifier is trained: standard training and the adversarial trainings that serve as the positive
control of every defence evaluation (a defence known to work must come out robust through the same code).

Each method is one class with `loss(x, labels, generator)`: the loss of one batch of augmented images in [0, 1]
and the logits its accuracy is counted on. The one training loop (`training.fit`) runs every method through
`classifier.ClassificationObjective`. The declarations (titles, references, costs) live torch-free in
`plan.training_specs`; `register` gives a built-in class its declaration and adds that of a plug-in class.

- `standard`: cross-entropy on the images.
- `pgd_at` (Madry et al., ICLR 2018): cross-entropy on L-inf PGD adversarials (uniform random start, `steps`
  signed-gradient steps of `step_size`, projected on the eps ball and [0, 1]); the attack runs in train mode,
  as in the reference implementations (Madry et al.; Rice et al. 2020).
- `trades` (Zhang et al., ICML 2019): CE(f(x), y) + beta KL(f(x_adv) || f(x)), x_adv maximising the KL from
  x + 0.001 N(0, 1) in eval mode (as the authors' code does).
- `fast_at` (Wong, Rice & Kolter, ICLR 2020): cross-entropy on one FGSM step of `step_size` from a uniform
  random start in the ball (train mode). It can overfit catastrophically (robust accuracy against PGD falls to
  0 within an epoch): the training log's per-epoch PGD accuracy (`pgd_accuracy`) shows it.

Random starts draw from the training generator, so a resumed run continues the same sequence.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .plan.declarations import add_to_registry, remove_from_registry
from .plan.plugins import load_plugin_modules
from .plan.training_specs import BUILT_IN, TRAININGS, TrainingSpec, training_spec

REGISTRY: dict[str, type[TrainingMethod]] = {}
PRECISIONS = ("float32", "bfloat16")


def register(cls):
    """Add a training method class to REGISTRY; one not declared in `plan.TRAININGS` declares itself by its
    class attributes (`name`, `title`, `reference`, `passes` ...)."""
    add_to_registry(REGISTRY, cls, TRAININGS, TrainingSpec, "training method")
    return cls


def unregister(name: str) -> None:
    remove_from_registry(REGISTRY, name, TRAININGS, BUILT_IN)


def training_method(name: str, model: torch.nn.Module, settings: dict, precision: str = "float32"):
    """An instance of the registered method `name` for `model`, with its settings block (classifier.<name>)."""
    training_spec(name)  # an unknown name: a ConfigError naming classifier.training
    return REGISTRY[name](model, settings, precision)


def _uniform(shape, eps: float, generator: torch.Generator, device) -> torch.Tensor:
    return ((torch.rand(shape, generator=generator) * 2 - 1) * eps).to(device)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """`x_adv` projected on the L-inf ball of radius eps around `x`, then on [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)


class TrainingMethod:
    spec: ClassVar[TrainingSpec]
    name: ClassVar[str]

    def __init__(self, model: torch.nn.Module, settings: dict, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ConfigError(f"classifier.precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.model = model
        self.settings = settings
        self.precision = precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits (float32), under bfloat16 autocast where `precision` says so."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            return self.model(x).float()

    def loss(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """(mean loss, logits the batch's accuracy is counted on) for images `x` in [0, 1]."""
        raise NotImplementedError


@register
class Standard(TrainingMethod):
    name = "standard"

    def loss(self, x, labels, generator):
        logits = self.forward(x)
        return F.cross_entropy(logits, labels), logits


def pgd(
    method: TrainingMethod, x, labels, eps: float, steps: int, step_size: float, generator
) -> torch.Tensor:
    """L-inf PGD on the cross-entropy from a uniform random start (Madry et al.), in the model's current mode."""
    x_adv = (x + _uniform(x.shape, eps, generator, x.device)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(method.forward(x_adv), labels), x_adv)
        x_adv = project(x_adv.detach() + step_size * grad.sign(), x, eps)
    return x_adv.detach()


@register
class PGDAdversarialTraining(TrainingMethod):
    name = "pgd_at"

    def loss(self, x, labels, generator):
        s = self.settings
        x_adv = pgd(self, x, labels, s["epsilon"], s["steps"], s["step_size"], generator)
        logits = self.forward(x_adv)
        return F.cross_entropy(logits, labels), logits


@register
class TRADES(TrainingMethod):
    name = "trades"

    def loss(self, x, labels, generator):
        s, eps = self.settings, self.settings["epsilon"]
        self.model.eval()
        with torch.no_grad():
            p_clean = F.softmax(self.forward(x), 1)
        x_adv = (x + 0.001 * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)
        for _ in range(s["steps"]):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(self.forward(x_adv), 1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = project(x_adv.detach() + s["step_size"] * grad.sign(), x, eps)
        self.model.train()
        logits = self.forward(x)
        logits_adv = self.forward(x_adv.detach())
        robust = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits, 1), reduction="batchmean")
        return F.cross_entropy(logits, labels) + s["beta"] * robust, logits


@register
class FastAdversarialTraining(TrainingMethod):
    name = "fast_at"

    def loss(self, x, labels, generator):
        eps, alpha = self.settings["epsilon"], self.settings["step_size"]
        delta = (x + _uniform(x.shape, eps, generator, x.device)).clamp(0, 1) - x
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(self.forward(x + delta), labels), delta)
        x_adv = project(x + (delta.detach() + alpha * grad.sign()).clamp(-eps, eps), x, eps)
        logits = self.forward(x_adv)
        return F.cross_entropy(logits, labels), logits


def pgd_accuracy(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, batch_size: int, seed: int = 0
) -> float:
    """Accuracy under PGD-10 (step eps/4, one random start, eval mode) on `x` (N x 3 x 32 x 32 in [0, 1]):
    the training curve's check of an adversarially trained classifier (AutoAttack, later, is the measure)."""
    model.eval()
    method = Standard(model, {})
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    for s in range(0, len(x), batch_size):
        xb, yb = x[s : s + batch_size], labels[s : s + batch_size]
        x_adv = pgd(method, xb, yb, eps, 10, eps / 4, generator)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == yb).sum())
    return correct / max(len(x), 1)


# the plug-in files last: their classes register with the built-ins above (advdefense.plan.plugins)
load_plugin_modules()
