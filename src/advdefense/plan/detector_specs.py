"""Detector declarations: what the DAG, the checks, the estimate and the tables need to know of a detector,
without its implementation (which lives in `advdefense.detectors` and needs torch).

A declaration says what the detector reads (`inputs`), which models of other stages it uses (`needs`), whether
it learns from attacked examples (`supervised`: one model per attack key), whether it is a control rather than
a method, whether it has a differentiable score (the detector-aware attack targets those), and what fitting it
costs (`fit_seconds`, for `advdefense-estimate`; what it reads and scores through other stages' models the
estimate prices from `inputs`, `needs` and `classifier_copies`). The built-in
detectors are declared here; `detectors.register` adds the declaration of a detector defined elsewhere (a
plug-in, or a test's toy detector) from its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError
from .declarations import declared

# what a detector may read: pixels in [0, 1], the Glow top latent, the Glow's bits/dim; each with the field of a
# latents file that holds it (None: the images themselves)
FLOW_FIELD = {"pixels": None, "latent": "z", "bpd": "bpd"}
INPUT_KINDS = tuple(FLOW_FIELD)
STAGE_MODELS = ("autoencoder", "classifier", "flow")  # models of other stages a detector may need


@dataclass(frozen=True)
class FitWork:
    """One detector job's fitting work, counted from the configuration by the estimate."""

    settings: dict  # the detector's config block (`detection.<name>`), {} where it has none
    examples: float  # training examples per epoch over all its models (supervised: each key's and the pooled)
    # images each fitted model scores, on average (calibration, test, attacked test, noise controls; the corrupted
    # clean images only the pooled model of a supervised detector): `models * scored` is what the job scores
    scored: float
    models: int  # models it fits: one per attack key and the pooled one where supervised, else 1
    train_images: int  # images of the training split


def no_fitting(work: FitWork) -> float:
    """A detector without parameters, or one whose only work is scoring through other stages' models."""
    return 0.0


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    title: str  # its label in the tables
    inputs: str = "pixels"  # one of INPUT_KINDS
    needs: tuple[str, ...] = ()  # of STAGE_MODELS
    supervised: bool = False  # learns from attacked examples (one model per attack key)
    control: bool = False  # shows what a cue alone achieves; not a method
    differentiable: bool = True  # has a differentiable score: the detector-aware attack can target it
    # versions of each image its score sends through the classifier (MagNet JSD: the image and its
    # reconstruction; feature squeezing: the image and its two squeezed copies); the estimate prices them.
    # None: 1 where it needs the classifier, else 0
    classifier_copies: int | None = None
    # seconds its fitting and scoring take on the estimate's reference machine (2 cores, advdefense.estimate)
    fit_seconds: Callable[[FitWork], float] = field(default=no_fitting, compare=False)
    # a plug-in's settings block detection.<name>: JSON-schema properties (with defaults); None: the schema
    # file has it (the built-ins) or there is none
    settings_schema: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.inputs not in INPUT_KINDS:
            raise ValueError(f"detector {self.name!r}: inputs {self.inputs!r} is not one of {INPUT_KINDS}")
        unknown = sorted(set(self.needs) - set(STAGE_MODELS))
        if unknown:
            raise ValueError(
                f"detector {self.name!r}: needs {unknown}, not models of the pipeline {STAGE_MODELS}"
            )
        if self.classifier_copies is None:
            object.__setattr__(self, "classifier_copies", int("classifier" in self.needs))
        if (self.classifier_copies > 0) != ("classifier" in self.needs):
            raise ValueError(
                f"detector {self.name!r}: classifier_copies {self.classifier_copies} where needs is "
                f"{self.needs}: a score through the classifier needs it, and one that needs it uses it"
            )

    @property
    def on_pixels(self) -> bool:
        """Reads attacked images directly (else their Glow latents or bits/dim, computed by the flow)."""
        return FLOW_FIELD[self.inputs] is None

    @property
    def on_flow_outputs(self) -> bool:
        """Reads what the Glow computes of an image (its top latent or its bits/dim)."""
        return not self.on_pixels

    def models(self, attacked: bool = False) -> set[str]:
        """The models of other stages its detection job loads: its own `needs`, and for the detector-aware
        attack (`attacked`) the classifier it fools and the flow it differentiates through."""
        models = set(self.needs)
        if attacked:
            models |= {"classifier"} | ({"flow"} if self.on_flow_outputs else set())
        return models


# fitting rates on the estimate's reference machine (2 cores; benchmarks/README.md, "Full size")
LATENT_MLP_TRAIN = 25000.0  # examples per second
PIXEL_CNN_TRAIN = (2.7e-4, 2.45e-7)  # seconds per image = a + b x width^2 (2150 images/s at 16, 700 at 32)
RESNET_FORWARD = 3000.0  # ResNet-20 forward passes per second (float32, 2 cores), for fitting on features


def _latent_mlp_seconds(work: FitWork) -> float:
    return work.settings["epochs"] * work.examples / LATENT_MLP_TRAIN


def _pixel_cnn_seconds(work: FitWork) -> float:
    a, b = PIXEL_CNN_TRAIN
    per_image = a + b * work.settings["width"] ** 2
    return work.settings["epochs"] * work.examples * per_image + work.models * work.scored * per_image / 3


def _pca_seconds(work: FitWork) -> float:
    # covariance of the training pool, eigh of 3072 x 3072, then one projection per scored image
    return work.train_images / 2000 + work.scored * 2e-5 + 15


def _mahalanobis_seconds(work: FitWork) -> float:
    # one pass of the clean training pool through the classifier (features and prediction), a D x D inverse;
    # scoring through the classifier is priced by classifier_copies
    return work.train_images * 2 / RESNET_FORWARD + 5


def _lid_seconds(work: FitWork) -> float:
    # every training example through the classifier (its layers) once per model, a logistic regression on a few
    # numbers each; scoring: beside the classifier pass the estimate prices for every scored image, the k-NN
    # distances over five layers' representations cost about one more (measured: 650 LID scores/s against
    # 1 350 ResNet-20 evaluations/s on the same 2 cores)
    return work.examples * 2 / RESNET_FORWARD + work.models * 2 + work.models * work.scored / RESNET_FORWARD


DETECTORS: dict[str, DetectorSpec] = {
    spec.name: spec
    for spec in (
        DetectorSpec(
            "latent_mlp",
            "Glow latent + 5-layer MLP (paper)",
            inputs="latent",
            needs=("flow",),
            supervised=True,
            fit_seconds=_latent_mlp_seconds,
        ),
        DetectorSpec(
            "pixel_cnn",
            "Binary CNN on pixels (Gong et al. 2017)",
            supervised=True,
            fit_seconds=_pixel_cnn_seconds,
        ),
        DetectorSpec(
            "pca", "PCA trailing-component energy (Hendrycks & Gimpel 2016)", fit_seconds=_pca_seconds
        ),
        DetectorSpec("magnet", "Autoencoder reconstruction error (MagNet)", needs=("autoencoder",)),
        DetectorSpec(
            "magnet_jsd",
            "Autoencoder + classifier JSD (MagNet)",
            needs=("autoencoder", "classifier"),
            classifier_copies=2,
        ),
        DetectorSpec(
            "feature_squeezing",
            "Feature squeezing: softmax L1 to squeezed inputs (Xu et al. 2018)",
            needs=("classifier",),
            classifier_copies=3,
        ),
        DetectorSpec(
            "mahalanobis",
            "Mahalanobis distance on the classifier's penultimate layer (Lee et al. 2018)",
            needs=("classifier",),
            fit_seconds=_mahalanobis_seconds,
        ),
        DetectorSpec(
            "lid",
            "Local intrinsic dimensionality of the classifier's layers (Ma et al. 2018)",
            needs=("classifier",),
            supervised=True,
            fit_seconds=_lid_seconds,
        ),
        DetectorSpec("bits_per_dim", "Glow bits/dim threshold (likelihood)", inputs="bpd", needs=("flow",)),
        DetectorSpec(
            "offgrid",
            "Control: share of off-grid pixels (no parameters)",
            control=True,
            differentiable=False,
        ),
    )
}


BUILT_IN = frozenset(DETECTORS)
PAPER_DETECTOR = "latent_mlp"  # the paper's detector: Table 4, its ROC figure, and a row of Table 5


def detector_spec(name: str, key: str = "detection.methods") -> DetectorSpec:
    """The declaration of detector `name`; an unknown name is a ConfigError naming `key`."""
    return declared(DETECTORS, name, key, "detector")


def detector_title(name: str) -> str:
    """A detector's label in the tables (its name where it is not declared, e.g. 'mmd')."""
    spec = DETECTORS.get(name)
    return spec.title if spec is not None else name


def aware_fpr(aware: dict, fprs) -> float:
    """The calibrated FPR whose threshold the detector-aware attack must get under (`detection.aware.fpr`), one of
    `detection.fprs`; else a ConfigError naming both keys. The one check, at config time and in the job."""
    fpr = float(aware["fpr"])
    if fpr not in [float(f) for f in fprs]:
        raise ConfigError(f"detection.aware.fpr: {aware['fpr']} is not one of detection.fprs {list(fprs)}")
    return fpr
