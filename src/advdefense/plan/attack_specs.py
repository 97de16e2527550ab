"""Attack specs: what an entry of `attacks:` may say, checked once before any job runs.

Torch-free: the Foolbox attack classes are looked up (and built once, to read their norm) without a model
library; Foolbox itself loads torch only when it wraps a model.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from .names import eps_tag

NORM_P = {"linf": math.inf, "l2": 2.0}
AUTOATTACK = "AutoAttack"  # attacks.<name>.class of the AutoAttack kind (every other class is Foolbox's)
QUANTIZE = ("float", "8bit")

# ----------------------------------------------------------------------------- attack families
AUTOATTACK_LEFT = 0.02  # share of images APGD-CE leaves to APGD-T, FAB-T and Square on an undefended ResNet


def autoattack_passes(spec: dict) -> float:
    """AutoAttack standard: APGD-CE's 100 steps on every image; APGD-T (9 targets x 100), FAB-T (9 x 100, about two
    passes each) and Square (5000 forward passes, a third of a backward pass's cost each) on what APGD-CE left."""
    return 100 + AUTOATTACK_LEFT * (900 + 1800 + 5000 / 3)


@dataclass(frozen=True)
class AttackFamilySpec:
    """An attack family (torch-free): the `attacks.<name>.class` values it runs and what the plan needs of it.
    Built in: Foolbox (every Foolbox attack class) and AutoAttack; a plug-in file declares more (one class
    registered with `advdefense.attack_methods.register`, README "Adding an attack family")."""

    name: str
    title: str
    classes: tuple[str, ...] = ()  # its `attacks.<name>.class` values (Foolbox's: any Foolbox attack class)
    # classifier forward + backward passes per image of one run (the estimate); a plug-in gives a number
    passes: Callable[[dict], float] = lambda spec: 10.0
    params: tuple[str, ...] | None = None  # the `params` it accepts (None: the family checks them itself)
    norms: tuple[str, ...] = tuple(NORM_P)  # the norms it bounds
    model_info: bool = (
        False  # its test-split results are RobustBench model_info entries (results/robustbench/)
    )

    def __post_init__(self):
        bad = [n for n in self.norms if n not in NORM_P]
        if bad:
            raise ValueError(f"attack family {self.name!r}: norms {bad} are not of {sorted(NORM_P)}")


FOOLBOX = "foolbox"
ATTACK_FAMILIES: dict[str, AttackFamilySpec] = {
    FOOLBOX: AttackFamilySpec(FOOLBOX, "Foolbox 3 (every attack class of foolbox.attacks)"),
    "autoattack": AttackFamilySpec(
        "autoattack",
        "AutoAttack (Croce & Hein 2020, the authors' code as pyautoattack)",
        classes=("AutoAttack",),
        passes=autoattack_passes,
        params=("version", "attacks"),
        norms=("linf", "l2"),
        model_info=True,
    ),
}
BUILT_IN_FAMILIES = frozenset(ATTACK_FAMILIES)


def attack_family(spec: dict) -> AttackFamilySpec:
    """The family that runs an `attacks:` entry: the one whose `classes` hold its class, else Foolbox."""
    for family in ATTACK_FAMILIES.values():
        if spec.get("class") in family.classes:
            return family
    return ATTACK_FAMILIES[FOOLBOX]


# ----------------------------------------------------------------------------- AutoAttack
AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")
AUTOATTACK_SUB_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
AUTOATTACK_NORMS = {"linf": "Linf", "l2": "L2"}
AUTOATTACK_PARAMS = ("version", "attacks")


def check_autoattack_params(key: str, params: dict, norm: str) -> None:
    """`attacks.<name>.params` of an AutoAttack entry: a known version, and for `custom` a list of known
    sub-attacks without repeats (the other versions fix their own list)."""
    unknown = sorted(set(params) - set(AUTOATTACK_PARAMS))
    if unknown:
        raise ConfigError(
            f"{key}.params: {', '.join(unknown)} not accepted by AutoAttack (it takes {', '.join(AUTOATTACK_PARAMS)})"
        )
    version = params.get("version", "standard")
    if version not in AUTOATTACK_VERSIONS:
        raise ConfigError(
            f"{key}.params.version: {version!r} is not an AutoAttack version ({', '.join(AUTOATTACK_VERSIONS)})"
        )
    subs = params.get("attacks")
    if version == "custom":
        if not isinstance(subs, list) or not subs:
            raise ConfigError(
                f"{key}.params.attacks: version custom needs a non-empty list of sub-attacks "
                f"({', '.join(AUTOATTACK_SUB_ATTACKS)})"
            )
        bad = [s for s in subs if s not in AUTOATTACK_SUB_ATTACKS]
        if bad:
            raise ConfigError(
                f"{key}.params.attacks: {', '.join(map(repr, bad))} not an AutoAttack sub-attack "
                f"(known: {', '.join(AUTOATTACK_SUB_ATTACKS)})"
            )
        if len(set(subs)) != len(subs):
            raise ConfigError(f"{key}.params.attacks: {subs} names a sub-attack twice")
    elif subs is not None:
        raise ConfigError(
            f"{key}.params.attacks: only version custom takes a list of sub-attacks; version "
            f"{version!r} runs its own"
        )
    if norm not in AUTOATTACK_NORMS:
        raise ConfigError(
            f"{key}.norm: AutoAttack is run here for {', '.join(AUTOATTACK_NORMS)}, not {norm!r}"
        )


GRADIENT_FREE_SUB_ATTACKS = frozenset({"square"})  # AutoAttack's black-box sub-attack: queries, no gradients


def gradient_free(spec: dict) -> bool:
    """Whether an attack reads no gradient (AutoAttack custom with only Square): through a defence, it is the
    check that the gradient attacks are not masked (it must not beat them, Carlini et al. 2019)."""
    params = spec.get("params") or {}
    subs = params.get("attacks") or []
    return (
        spec.get("class") == AUTOATTACK
        and params.get("version") == "custom"
        and bool(subs)
        and set(subs) <= GRADIENT_FREE_SUB_ATTACKS
    )


# ----------------------------------------------------------------------------- Foolbox
def foolbox_class(name: str, key: str):
    import foolbox

    cls = getattr(foolbox.attacks, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, foolbox.attacks.base.Attack)):
        known = sorted(
            n
            for n, c in vars(foolbox.attacks).items()
            if inspect.isclass(c) and issubclass(c, foolbox.attacks.base.Attack) and not inspect.isabstract(c)
        )
        raise ConfigError(
            f"{key}: {name!r} is neither a class of an attack family "
            f"({', '.join(c for f in ATTACK_FAMILIES.values() for c in f.classes)}) nor a Foolbox attack class "
            f"(known: {', '.join(known)})"
        )
    return cls


def check_attack_spec(name: str, spec: dict) -> None:
    """Validate one entry of `attacks:`: class, parameters, norm and epsilons."""
    key = f"attacks.{name}"
    for required in ("class", "norm", "epsilons"):
        if required not in spec:
            raise ConfigError(f"{key}.{required}: missing")
    check_attack_method(key, spec)
    check_epsilons(f"{key}.epsilons", spec["epsilons"])
    if spec.get("quantize", "float") not in QUANTIZE:
        raise ConfigError(f"{key}.quantize: {spec['quantize']!r} is not one of {', '.join(QUANTIZE)}")
    if spec.get("quantize", "float") == "8bit" and spec["norm"] != "linf":
        raise ConfigError(
            f"{key}.quantize: 8bit rounding is kept inside an L-inf ball only; use it with norm linf"
        )
    if spec.get("quantize", "float") == "8bit":
        small = [e for e in spec["epsilons"] if math.floor(e * 255.0 + 1e-6) < 1]
        if small:
            raise ConfigError(
                f"{key}.quantize: 8bit with epsilon {small[0]!r} (below 1/255 = 0.00392157) rounds every "
                f"adversarial back to its clean image: the attack would change nothing and its "
                f"'robust accuracy' would be the clean accuracy; use epsilons of at least 1/255 or "
                f"quantize: float"
            )


def check_attack_method(key: str, spec: dict) -> None:
    """The method part of an attack entry (`class`, `params`, `norm`): what one attack job needs."""
    family = attack_family(spec)
    if spec["class"] == AUTOATTACK:
        check_autoattack_params(key, spec.get("params") or {}, spec["norm"])
        return
    if family.name != FOOLBOX:  # a plug-in family: its declared parameters and norms
        unknown = sorted(set(spec.get("params") or {}) - set(family.params or ()))
        if family.params is not None and unknown:
            raise ConfigError(
                f"{key}.params: {', '.join(unknown)} not accepted by {spec['class']} of attack family "
                f"{family.name} (it takes {', '.join(family.params) or 'no parameters'})"
            )
        if spec["norm"] not in family.norms:
            raise ConfigError(
                f"{key}.norm: {spec['class']} (attack family {family.name}) bounds {', '.join(family.norms)}, "
                f"not {spec['norm']!r}"
            )
        return
    cls = foolbox_class(spec["class"], f"{key}.class")
    params = spec.get("params") or {}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{key}.params: {', '.join(unknown)} not accepted by foolbox.attacks.{spec['class']} "
            f"(it takes {', '.join(accepted) or 'no parameters'})"
        )
    signature = inspect.signature(cls.__init__).parameters
    for pname, value in params.items():
        default = signature[pname].default
        if not _same_kind(value, default):
            raise ConfigError(
                f"{key}.params.{pname}: {value!r} is not a valid value "
                f"(foolbox.attacks.{spec['class']} expects a {type(default).__name__}, default {default!r})"
            )
        check_param_range(f"{key}.params", pname, value)
    norm = spec["norm"]
    if norm not in NORM_P:
        raise ConfigError(f"{key}.norm: {norm!r} is not one of {sorted(NORM_P)}")
    try:
        attack = cls(**params)
    except Exception as exc:
        raise ConfigError(f"{key}.params: foolbox.attacks.{spec['class']}(**{params}) failed: {exc}") from exc
    p = getattr(attack.distance, "p", None)
    if p != NORM_P[norm]:
        raise ConfigError(
            f"{key}.norm: {norm!r} does not match foolbox.attacks.{spec['class']}, "
            f"which bounds the L{'inf' if p == math.inf else p} norm"
        )


# Ranges of Foolbox constructor parameters (by name, across its attacks): a value outside makes no attack
# (`steps: -5` runs zero steps and stores the clean images as "adversarials") or is rejected by Foolbox late.
POSITIVE_INT_PARAMS = {
    "steps",
    "candidates",
    "binary_search_steps",
    "directions",
    "population",
    "repeats",
    "random_steps",
    "num_rotations",
    "num_translations",
    "lr_num_decay",
    "max_gradient_eval_steps",
    "initial_gradient_eval_steps",
    "update_stats_every_k",
}
POSITIVE_PARAMS = {
    "rel_stepsize",
    "abs_stepsize",
    "stepsize",
    "initial_stepsize",
    "max_stepsize",
    "min_stepsize",
    "lr",
    "init_epsilon",
    "spherical_step",
    "source_step",
    "step_adaptation",
    "sampling_temperature",
    "max_sigma",
    "adam_epsilon",
}
NONNEGATIVE_PARAMS = {
    "overshoot",
    "confidence",
    "initial_const",
    "regularization",
    "momentum",
    "max_rotation",
    "max_translation",
    "xi",
    "gamma",
    "mutation_range",
    "source_step_convergance",
}
UNIT_INTERVAL_PARAMS = {"quantile", "mutation_probability", "lr_decay", "adam_beta1", "adam_beta2"}


def check_param_range(key: str, name: str, value) -> None:
    """Refuse a numeric attack parameter outside its meaningful range (None keeps Foolbox's default)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if name in POSITIVE_INT_PARAMS and value < 1:
        raise ConfigError(f"{key}.{name}: must be a positive integer, got {value!r}")
    if name in POSITIVE_PARAMS and not value > 0:
        raise ConfigError(f"{key}.{name}: must be positive, got {value!r}")
    if name in NONNEGATIVE_PARAMS and value < 0:
        raise ConfigError(f"{key}.{name}: must be 0 or more, got {value!r}")
    if name in UNIT_INTERVAL_PARAMS and not 0 <= value <= 1:
        raise ConfigError(f"{key}.{name}: must lie in [0, 1], got {value!r}")


def check_epsilons(key: str, epsilons) -> None:
    """Positive, finite, increasing epsilons whose file-name tags (`eps_tag`) are distinct and non-zero: two
    values with one tag would be one job writing one file."""
    if not isinstance(epsilons, (list, tuple)) or not epsilons:
        raise ConfigError(f"{key}: must be a non-empty list of positive numbers")
    tags = {}
    for i, e in enumerate(epsilons):
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e <= 0:
            raise ConfigError(f"{key}: {e!r} is not a positive number")
        if i and e <= epsilons[i - 1]:
            what = "repeats" if e == epsilons[i - 1] else "is smaller than"
            raise ConfigError(
                f"{key}: {e!r} {what} the epsilon before it ({epsilons[i - 1]!r}); a sweep lists each "
                f"epsilon once, increasing"
            )
        tag = eps_tag(e)
        if float(tag) == 0.0:
            raise ConfigError(
                f"{key}: {e!r} is too small to name a file (it would be tagged {tag!r}); use 1e-10 or more"
            )
        if tag in tags:
            raise ConfigError(
                f"{key}: {tags[tag]!r} and {e!r} are the same epsilon to 7 significant digits (both "
                f"name the file eps{tag}); remove one"
            )
        tags[tag] = e


def _same_kind(value, default) -> bool:
    """Is `value` an acceptable replacement for a constructor default (None/empty: anything)?"""
    if default is None or default is inspect.Parameter.empty:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, type(default))


def shard_range(n: int, batch_size: int, shard: int, shards: int, what: str) -> tuple[int, int]:
    """Images [lo, hi) of shard `shard` (0-based) of `shards` over a job of `n` images: shards take whole
    batches of `batch_size` (the batches of the unsharded job, so every batch sees the same images and seed)."""
    batches = -(-n // batch_size)
    if not 1 <= shards <= batches:
        raise ConfigError(
            f"attack_defaults.shards: {shards} shards, but {what} has {n} image(s), {batches} batch(es) "
            f"of attack_defaults.batch_size {batch_size}; each shard takes whole batches, so use at "
            f"most {batches} shards (or a smaller batch size)"
        )
    if not 0 <= shard < shards:
        raise ConfigError(f"attack shard {shard + 1} of {shards} does not exist")
    lo, hi = shard * batches // shards, (shard + 1) * batches // shards
    return lo * batch_size, min(hi * batch_size, n)
