"""Attack methods: what attacks one batch, behind one protocol, one class per attack family.

`AttackMethod` is what the batch runner (`attacks.run_attack`) calls: a Foolbox attack (`FoolboxMethod`),
AutoAttack (`AutoAttackMethod`, around `autoattack.AutoAttackRunner`), a plug-in family's class (`register`,
a subclass of `AttackFamily`), or any of them run again on the images still standing (`Restarts`).
`build_method` picks the family's class from an attack's settings (`plan.attack_specs.attack_family`).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from .autoattack import AutoAttackRunner
from .inference import LogitRecorder
from .plan.attack_specs import (
    ATTACK_FAMILIES,
    BUILT_IN_FAMILIES,
    AttackFamilySpec,
    attack_family,
    foolbox_class,
)
from .plan.declarations import add_to_registry, remove_from_registry


class AttackMethod(Protocol):
    """Attacks one batch: `(x, y, seed) -> (clipped adversarials, sub-attack per image or None)`.

    `sub_attacks`: the names an AutoAttack run records per image (empty for a single attack); `runs`: after
    each batch, per image the run (0-based) whose adversarial is kept, where the method restarts (else None);
    `draws_at_random`: whether a second run with another seed can give other adversarials (a random start, a
    random model); `finish()`: the warnings the method gathered over the job."""

    sub_attacks: list[str]
    runs: torch.Tensor | None
    draws_at_random: bool

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def finish(self) -> list[str]: ...


def quantize_8bit(adv: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """`adv` rounded to the nearest 8-bit value k/255 that stays within `eps` (L-inf) of the clean image,
    which lies on that grid. What a real image file of the adversarial would hold."""
    q = torch.round(adv * 255.0)
    c = torch.round(clean * 255.0)
    reach = math.floor(eps * 255.0 + 1e-6)  # grid steps allowed each way
    return (torch.minimum(torch.maximum(q, c - reach), c + reach).clamp(0, 255) / 255.0).float()


def build_attack(spec: dict):
    return foolbox_class(spec["class"], "attacks.<name>.class")(**(spec.get("params") or {}))


# Foolbox classes that draw nothing at random: the same inputs give the same adversarials whatever the seed
DETERMINISTIC_FOOLBOX = ("LinfDeepFoolAttack", "L2DeepFoolAttack")


def attack_draws_at_random(attack) -> bool:
    """Whether a Foolbox attack object can give other adversarials with another seed: the gradient attacks
    (FGSM, PGD, BIM ...) say so in `random_start`; DeepFool draws nothing; any other class is taken to draw."""
    if hasattr(attack, "random_start"):
        return bool(attack.random_start)
    return type(attack).__name__ not in DETERMINISTIC_FOOLBOX


def model_draws_at_random(model: torch.nn.Module) -> bool:
    """Whether a model (or a module in it) declares random outputs, e.g. a random purifier under EOT."""
    return any(getattr(m, "draws_at_random", False) for m in model.modules())


# ----------------------------------------------------------------------------- the registry of families
REGISTRY: dict[str, type] = {}  # family name -> the class that runs its attacks


def register(cls):
    """Class decorator: `cls` (with `name`, and the declaration's fields as class attributes: `title`, `classes`,
    `passes`, `params`, `norms`, `model_info`) runs the attacks of family `cls.name`; a plug-in file's class must
    carry what its file declares."""
    add_to_registry(REGISTRY, cls, ATTACK_FAMILIES, AttackFamilySpec, "attack family")
    return cls


def unregister(name: str) -> None:
    remove_from_registry(REGISTRY, name, ATTACK_FAMILIES, BUILT_IN_FAMILIES)


class AttackFamily:
    """Base of an attack family's class: built per attack job as `(spec, net, eps, device)` (`spec`: the
    `attacks.<name>` entry; `net`: the evaluation model, pixels in [0, 1] -> logits; `eps`: the job's epsilon),
    called per batch as `(x, y, seed) -> (adversarials, None)`. A subclass implements `attack(x, y, seed)`,
    which returns adversarials within `eps` of `x` in the entry's norm and inside [0, 1]: the batch runner
    checks both and refuses a batch that is not."""

    sub_attacks: list[str] = []
    runs = None
    draws_at_random = True  # whether another seed can give other adversarials (then restarts help)

    def __init__(self, spec: dict, net: torch.nn.Module, eps: float, device):
        self.spec, self.net, self.eps, self.device = spec, net, float(eps), device
        self.params = dict(spec.get("params") or {})

    def attack(self, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x, y, seed: int):
        return self.attack(x, y, seed), None

    def finish(self) -> list[str]:
        return []


@register
class FoolboxMethod:
    """A Foolbox attack as a callable `(x, y, seed) -> (clipped adversarials, None)`."""

    name = "foolbox"
    sub_attacks: list[str] = []
    runs = None

    def __init__(self, spec: dict, net: torch.nn.Module, eps: float, device):
        import foolbox

        self.attack = build_attack(spec)
        self.fmodel = foolbox.PyTorchModel(net, bounds=(0.0, 1.0), device=device)
        self.eps = eps
        self.draws_at_random = attack_draws_at_random(self.attack) or model_draws_at_random(net)

    def __call__(self, x, y, seed: int):
        torch.manual_seed(seed)
        _, clipped, _ = self.attack(self.fmodel, x, y, epsilons=self.eps)
        return clipped, None

    def finish(self) -> list[str]:
        return []


@register
class AutoAttackMethod(AutoAttackRunner):
    """AutoAttack (`autoattack.AutoAttackRunner`) built like every family's class. Its sub-attacks run the bare
    evaluation network (their hundreds of passes need no recording); its clean pass runs `net`, which gives the
    stored clean predictions."""

    name = "autoattack"

    def __init__(self, spec: dict, net: LogitRecorder, eps: float, device):
        super().__init__(net.model, spec["norm"], eps, spec.get("params") or {}, device, recorder=net)


class Restarts:
    """An attack run up to `restarts` times on a batch, each run with its own seed (a fresh random start) on
    the images that no earlier run fooled; per image the first run that fooled the model is kept.
    `runs`: after each batch, per image the run (0-based) whose adversarial is kept.
    A method that draws nothing at random (DeepFool, FGSM without a random start, on a deterministic model)
    runs once: a second run would repeat the first (every image then keeps run 0)."""

    def __init__(self, method, restarts: int, model: torch.nn.Module):
        self.method, self.restarts, self.model = method, restarts, model
        self.sub_attacks = method.sub_attacks
        self.draws_at_random = method.draws_at_random
        self.runs: torch.Tensor | None = None

    def __call__(self, x, y, seed: int):
        adv, sub = self.method(x, y, seed)
        self.runs = torch.zeros(len(x), dtype=torch.int8, device=y.device)
        for r in range(1, self.restarts if self.draws_at_random else 1):
            with torch.no_grad():
                robust = self.model(adv.float().clamp(0.0, 1.0)).argmax(1) == y
            if not robust.any():
                break
            idx = torch.nonzero(robust).flatten()
            again, sub_again = self.method(x[idx], y[idx], (seed + 104_729 * r) % (2**31))
            with torch.no_grad():
                fooled = self.model(again.float().clamp(0.0, 1.0)).argmax(1) != y[idx]
            adv = adv.clone()
            adv[idx[fooled]] = again[fooled].to(adv.dtype)
            self.runs[idx[fooled]] = r
            if sub is not None:
                sub[idx[fooled]] = sub_again[fooled]
        return adv, sub

    def finish(self) -> list[str]:
        return self.method.finish()


def build_method(spec: dict, net: LogitRecorder, eps: float, device) -> AttackMethod:
    """The callable that attacks one batch for an attack entry: its family's class (`plan.attack_specs.
    attack_family`: AutoAttack, a plug-in's, else Foolbox, which runs `net`, whose recorded passes give the stored
    predictions); with `restarts` > 1, run again on the images still classified correctly."""
    family = attack_family(spec).name
    if family not in REGISTRY:
        raise RuntimeError(
            f"attack family {family!r} is declared but no class registers it (its plug-in file?)"
        )
    method = REGISTRY[family](spec, net, eps, device)
    restarts = spec.get("restarts", 1)
    return Restarts(method, restarts, net.model) if restarts > 1 else method


# every plug-in file's classes register themselves (plan.plugins)
from .plan.plugins import load_plugin_modules  # noqa: E402

load_plugin_modules()
