"""Purifier declarations (`purification.methods`): what the DAG, the checks, the estimate, the tables and the
figures need to know of a purifier, without its implementation (which lives in `advdefense.purifiers` and needs
torch).

A purifier maps an image in [0, 1] to an image of the same shape in [0, 1] before the classifier sees it (the
paper's autoencoder; JPEG compression, bit-depth reduction, median smoothing). A declaration says what it is
called in the tables (`title`), what it is (`reference`), the published figure it is anchored to where there is
one (`anchor`), which models of other stages it loads (`needs`: the autoencoder's; such a model is trained by its
stage's own rule), how the attack that knows it differentiates through it (`gradient`: "exact" where autograd
gives its true gradient; "bpda" where a step has no useful gradient and its backward is the identity, Athalye
et al. 2018), whether it draws at random (`random`: the adaptive attack then averages `eot_samples` draws, EOT),
and what one image through it costs next to a ResNet-20 forward pass (`cost`, for `advdefense-estimate`). The
built-in purifiers are declared here; `purifiers.register` adds the declaration of one defined elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .declarations import declared

GRADIENTS = ("exact", "bpda")  # how an attack differentiates through a purifier (see the module docstring)
PURIFIER_MODELS = ("autoencoder",)  # models of other stages a purifier may load


@dataclass(frozen=True)
class PurifierSpec:
    name: str
    title: str  # its label in the tables and figures
    reference: str = ""
    anchor: str | None = None  # a published figure to compare with, or None
    needs: tuple[str, ...] = ()  # of PURIFIER_MODELS
    gradient: str = "exact"  # one of GRADIENTS
    random: bool = False  # draws at random: the adaptive attack uses EOT
    cost: float = 0.1  # seconds of one image through it / seconds of one image through a ResNet-20 (forward)
    # a plug-in's settings block purification.<name>: JSON-schema properties (with defaults); None: the schema
    # file has it (the built-ins) or there is none
    settings_schema: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.gradient not in GRADIENTS:
            raise ValueError(f"purifier {self.name!r}: gradient {self.gradient!r} is not one of {GRADIENTS}")
        unknown = sorted(set(self.needs) - set(PURIFIER_MODELS))
        if unknown:
            raise ValueError(
                f"purifier {self.name!r}: needs {unknown}, not models a purifier may load {PURIFIER_MODELS}"
            )

    @property
    def adaptive_label(self) -> str:
        """How the adaptive attack goes through it, as the tables say it."""
        way = "BPDA (identity backward)" if self.gradient == "bpda" else "its true gradient"
        return f"{way}{', EOT' if self.random else ''}"


PURIFIERS: dict[str, PurifierSpec] = {
    spec.name: spec
    for spec in (
        PurifierSpec(
            "autoencoder",
            "Autoencoder (paper)",
            "convolutional autoencoder trained on clean images (the paper's method 1)",
            anchor="the paper's Table 3: 52.39 % of successful adversarials classified right after purification",
            needs=("autoencoder",),
            cost=0.3,
        ),
        PurifierSpec(
            "jpeg",
            "JPEG compression (Guo et al. 2018)",
            "JPEG at a fixed quality, decoded again (Guo, Rana, Cisse & van der Maaten, ICLR 2018)",
            anchor="Athalye et al. 2018: Guo et al.'s input transformations, JPEG among them, at 0 % under BPDA + EOT (ImageNet, L2)",
            gradient="bpda",
            cost=0.15,
        ),
        PurifierSpec(
            "bit_depth",
            "Bit-depth reduction (Xu et al. 2018)",
            "pixels rounded to 2^bits levels (Xu, Evans & Qi, NDSS 2018: 5 bits for CIFAR-10)",
            anchor="He et al. 2017 evade feature squeezing on CIFAR-10 with adaptive attacks: expected near 0 % adaptive",
            gradient="bpda",
            cost=0.01,
        ),
        PurifierSpec(
            "median",
            "Median smoothing (Xu et al. 2018)",
            "each pixel replaced by its window's median, per channel (Xu, Evans & Qi, NDSS 2018: 2 x 2)",
            anchor="He et al. 2017 evade feature squeezing on CIFAR-10 with adaptive attacks: expected near 0 % adaptive",
            cost=0.02,
        ),
    )
}
BUILT_IN = frozenset(PURIFIERS)


# The autoencoder of each point of `purification.autoencoder_sweep` is a purifier of its own, `autoencoder.<point>`:
# the built-in autoencoder purifier in front of that point's checkpoint (the dot keeps the names apart from any
# registered purifier's, which are identifiers).
SWEEP_PURIFIER = "autoencoder"
SWEEP_SEPARATOR = "."


def sweep_purifier(point: str) -> str:
    """The purifier name of sweep point `point`: 'autoencoder.code1024'."""
    return f"{SWEEP_PURIFIER}{SWEEP_SEPARATOR}{point}"


def sweep_point(name: str) -> str | None:
    """The sweep point of a purifier name ('autoencoder.code1024' -> 'code1024'); None for any other purifier."""
    prefix = SWEEP_PURIFIER + SWEEP_SEPARATOR
    return name[len(prefix) :] if name.startswith(prefix) else None


def purifier_kind(name: str) -> str:
    """The registered purifier behind a purifier name: 'autoencoder' for a sweep point, else the name itself."""
    return SWEEP_PURIFIER if sweep_point(name) is not None else name


def purifier_spec(name: str, key: str = "purification.methods") -> PurifierSpec:
    """The declaration of purifier `name` (a sweep point's: the autoencoder's, titled by its point); an unknown
    name is a ConfigError naming `key`."""
    spec = declared(PURIFIERS, purifier_kind(name), key, "purifier")
    point = sweep_point(name)
    if point is None:
        return spec
    return replace(spec, name=name, title=f"Autoencoder {point}", anchor=None)


def purifier_title(name: str) -> str:
    if sweep_point(name) is not None:
        return purifier_spec(name).title
    spec = PURIFIERS.get(name)
    return spec.title if spec is not None else name


def purifier_settings(cfg: dict, name: str) -> dict:
    """The settings block `purification.<name>` of a purifier ({} where it has none)."""
    return dict(cfg["purification"].get(name) or {})
