"""Per-image detectors of attacked images: one base class, one registry.

Every detector turns an input (pixels in [0, 1], a Glow top latent, or a bits/dim value) into a score,
larger = "more likely attacked". `fit` sees the training split (clean images, and the attacked ones for
supervised detectors); thresholds never come from here but from the clean calibration split
(`detection.calibrate`). Detectors that can be written as a differentiable function of the pixels give
`torch_scorer`, which the detector-aware attack (`aware.py`) differentiates.

Adding a detector: one subclass with `name` (and `title`, `inputs`, `needs` ... as class attributes),
decorated with `@register`, plus its settings under `detection.<name>` in the schema. The built-in detectors
are declared in `plan.detector_specs` (torch-free: the DAG, the checks and the tables read the declarations
without this module); `register` gives a built-in class its declaration and adds that of any other class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError
from .models import save_checkpoint
from .models.detectors import LatentMLP, PixelCNNDetector
from .models.features import PENULTIMATE, FeatureReader
from .plan.declarations import add_to_registry, remove_from_registry
from .plan.detector_specs import BUILT_IN, DETECTORS, FLOW_FIELD, DetectorSpec, detector_spec
from .plan.plugins import load_plugin_modules
from .squeezers import median_smooth, reduce_bit_depth
from .training import FitSettings, TrainingRun, fit, run_settings, seed_everything

log = logging.getLogger(__name__)
LN2 = math.log(2.0)
CHANCE_LOSS_MARGIN = 0.02  # a final training loss within this of ln 2: the detector did not train
REGISTRY: dict[str, type[Detector]] = {}


def register(cls):
    """Add a detector class to REGISTRY. A built-in one takes its declaration (`plan.DETECTORS[name]`); one
    defined elsewhere declares itself by its class attributes, and its declaration joins `plan.DETECTORS`."""
    spec = add_to_registry(REGISTRY, cls, DETECTORS, DetectorSpec, "detector")
    for f in fields(DetectorSpec):
        value = getattr(spec, f.name)
        setattr(cls, f.name, staticmethod(value) if callable(value) else value)  # fit_seconds takes no self
    return cls


def unregister(name: str) -> None:
    """Remove a detector added by `register` (and its declaration, unless it is a built-in one)."""
    remove_from_registry(REGISTRY, name, DETECTORS, BUILT_IN)


def detector_class(name: str, key: str = "detection.methods") -> type[Detector]:
    detector_spec(name, key)  # an unknown name: a ConfigError naming `key`
    return REGISTRY[name]


@dataclass
class DetectorContext:
    """What a detector may use besides its settings: the seed, device, a work directory, and the models
    of other stages (`autoencoder`, `classifier`, `flow`) that the registry says it `needs`."""

    seed: int
    device: torch.device
    workdir: Path
    models: dict = field(default_factory=dict)
    _features: FeatureReader | None = field(default=None, repr=False, compare=False)

    def model(self, name: str, detector: str):
        if self.models.get(name) is None:
            raise ConfigError(f"detection.methods: {detector!r} needs the {name}")
        return self.models[name]

    def features(self, x: torch.Tensor, detector: str, layer: str = PENULTIMATE) -> torch.Tensor:
        """The classifier's features of `x` (float32 in [0, 1]) at `layer` (`PENULTIMATE`: the input of its last
        linear layer, for every kind of classifier; a named layer of a classifier trained here), differentiable
        in `x` (`models.features`). The detector must declare `needs = ("classifier",)`."""
        return self.feature_reader(detector)(x, layer)

    def feature_reader(self, detector: str) -> FeatureReader:
        """The classifier's `FeatureReader` (made once)."""
        if self._features is None:
            self._features = FeatureReader(self.model("classifier", detector))
        return self._features


class Detector:
    # the declaration's fields (plan.DetectorSpec), set by `register`; a detector defined outside the package
    # sets those that differ from these defaults
    spec: ClassVar[DetectorSpec]
    name: ClassVar[str]
    title: ClassVar[str]  # label in the tables
    inputs: ClassVar[str] = "pixels"  # one of plan.INPUT_KINDS
    needs: ClassVar[tuple[str, ...]] = ()  # other stages' models: autoencoder, classifier, flow
    supervised: ClassVar[bool] = False  # learns from attacked examples (one model per attack)
    control: ClassVar[bool] = False  # a control that shows what a cue alone achieves, not a method
    differentiable: ClassVar[bool] = True  # has `torch_scorer`: the detector-aware attack can target it
    classifier_copies: ClassVar[int | None] = (
        None  # versions of an image its score sends through the classifier
    )

    def __init__(self, settings: dict, context: DetectorContext, tag: str):
        self.settings = settings
        self.context = context
        self.tag = tag  # the training key, for file names
        self.final_loss = float("nan")

    @property
    def trained(self) -> bool:
        """False for a supervised detector whose final training loss stayed at chance (ln 2)."""
        return not (self.supervised and abs(self.final_loss - LN2) < CHANCE_LOSS_MARGIN)

    def fit(self, x: np.ndarray, y: np.ndarray, clean_pool: np.ndarray | None = None) -> None:
        """`x`, `y`: training inputs and labels (0 clean, 1 attacked); `clean_pool`: every clean training
        input (for detectors that model clean data only)."""

    def score(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        scorer = self.torch_scorer()
        out = []
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
                out.append(scorer(xb.to(self.context.device)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def torch_scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Differentiable inputs -> scores (N), in eval mode; NotImplementedError if there is none."""
        raise NotImplementedError(f"{self.name} has no differentiable score")

    def views(self) -> Callable[[torch.Tensor], list[torch.Tensor]] | None:
        """The transformed copies of an image whose classifier outputs the score compares (differentiable as the
        detector's score is), for the detector-aware attack's views objective; None where the score compares
        none."""
        return None

    def pixel_scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Differentiable pixels in [0, 1] -> scores: what a white-box attacker differentiates."""
        scorer = self.torch_scorer()
        if self.spec.on_pixels:
            return scorer
        flow = self.context.model("flow", self.name)

        def through_flow(pixels01):
            z, bpd = flow(flow.preprocess(pixels01))
            return scorer(z if FLOW_FIELD[self.inputs] == "z" else bpd[:, None])

        return through_flow

    def save(self) -> None:
        """Write what was learnt into the work directory (neural detectors: a checkpoint)."""


# ----------------------------------------------------------------------------- supervised, neural
class BinaryObjective:
    """Class-weighted binary cross-entropy: at chance its value is ln 2 whatever the class balance."""

    def __init__(self, model, pos_weight: float):
        self.model = model
        self.pos_weight = pos_weight

    def __call__(self, batch, generator):
        x, y = batch
        logits = self.model(x)
        weight = torch.where(y > 0.5, torch.full_like(y, self.pos_weight), torch.ones_like(y))
        weight = weight * ((1.0 + self.pos_weight) / (2.0 * self.pos_weight))  # mean weight 1 over the set
        loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
        correct = ((logits.detach() > 0).float() == y).sum()
        return loss, {"loss": loss.detach() * len(y), "accuracy": correct}


class NeuralDetector(Detector):
    """A binary network trained with the shared training loop; score = its logit."""

    def build(self, x: np.ndarray) -> torch.nn.Module:
        raise NotImplementedError

    def fit(self, x, y, clean_pool=None) -> None:
        ctx, settings = self.context, self.settings
        seed_everything(ctx.seed)  # before building: the initial weights come from the seed
        self.model = self.build(x).to(ctx.device)
        generator = seed_everything(ctx.seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(ctx.device)
        yt = torch.from_numpy(np.asarray(y, dtype=np.float32)).to(ctx.device)
        self.model.standardize.fit(xt)
        n_pos = float(y.sum())
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"]
        )
        run = TrainingRun(
            ctx.workdir / f"{self.tag}.state.pt",
            ctx.workdir / f"{self.tag}.epochs.csv",
            {**run_settings("detection", settings, ctx.seed), "examples": len(y)},
        )
        history = fit(
            self.model,
            BinaryObjective(self.model, (len(y) - n_pos) / n_pos),
            (xt, yt),
            optimizer,
            FitSettings(
                settings["epochs"], settings["batch_size"], {"name": "cosine"}, f"{self.name} {self.tag}"
            ),
            generator,
            run,
        )
        run.state_path.unlink(missing_ok=True)
        self.final_loss = float(history[-1]["train_loss"])
        if not self.trained:
            log.warning(
                "%s trained on %s did not train: final training loss %.4f is within %.2f of ln 2 = %.4f "
                "(chance); it is reported as 'did not train'",
                self.name,
                self.tag,
                self.final_loss,
                CHANCE_LOSS_MARGIN,
                LN2,
            )
        self.model.eval()

    def torch_scorer(self):
        self.model.eval()
        return self.model

    def save(self) -> None:
        save_checkpoint(
            self.context.workdir / f"{self.tag}.pt",
            "detector",
            self.model,
            {"trained_on": self.tag, "method": self.name, "final_loss": self.final_loss},
        )


@register
class LatentMLPDetector(NeuralDetector):
    name = "latent_mlp"

    def build(self, x):
        return LatentMLP(int(np.prod(x.shape[1:])), self.settings["widths"], self.settings["dropout"])


@register
class PixelCNN(NeuralDetector):
    name = "pixel_cnn"

    def build(self, x):
        return PixelCNNDetector(self.settings["width"])


# ----------------------------------------------------------------------------- models of clean data
@register
class PCADetector(Detector):
    """Hendrycks & Gimpel 2016: adversarial images put more energy into the trailing principal components
    of clean data. Score = mean squared whitened coefficient beyond the first `skip_components`. Fitted on
    every clean training image, which must be at least as many as the dimensions (else the trailing
    components, where the signal lives, do not exist)."""

    name = "pca"

    def fit(self, x, y, clean_pool=None) -> None:
        clean = clean_pool if clean_pool is not None else x[y < 0.5]
        n, dims = len(clean), int(np.prod(clean.shape[1:]))
        if n < dims:
            raise ConfigError(
                f"detection.methods: pca needs at least as many clean training images as dimensions "
                f"({dims}) to have every principal component, but the training split has {n}; use a "
                f"larger dataset.train_size (or synthetic.train_images) or leave pca out"
            )
        skip = self.settings["skip_components"]
        if skip >= dims - 1:
            raise ConfigError(f"detection.pca.skip_components: {skip} leaves no components of {dims}")
        self.mean, cov = _mean_and_covariance(clean)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigenvalues)[::-1]
        std = np.sqrt(np.clip(eigenvalues[order], 0.0, None))
        keep = std > 1e-8 * std[0]
        self.components = torch.from_numpy(eigenvectors[:, order].T[keep][skip:].astype(np.float32))
        self.std = torch.from_numpy(std[keep][skip:].astype(np.float32))
        self.fitted_on = n
        log.info(
            "pca: fitted on %d clean training images of %d dimensions; %d trailing components scored",
            n,
            dims,
            len(self.std),
        )

    def torch_scorer(self):
        device = self.context.device
        mean = torch.from_numpy(self.mean.astype(np.float32)).to(device)
        comps, std = self.components.to(device), self.std.to(device)
        return lambda x: ((((x.flatten(1) - mean) @ comps.T) / std) ** 2).mean(1)


def _as_unit_float64(block: np.ndarray) -> np.ndarray:
    """A block of inputs as float64 rows: uint8 pixels scaled to [0, 1], anything else as it is."""
    rows = block.reshape(len(block), -1)
    return rows / 255.0 if rows.dtype == np.uint8 else rows.astype(np.float64)


def _mean_and_covariance(x: np.ndarray, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (divided by N - 1) of the rows of `x` (uint8 pixels or floats), in float64, from
    two passes of `block` rows each (mean first, then centred products, which loses nothing to cancellation):
    memory holds the D x D covariance and one block, however many rows there are (an SVD of the centred
    float64 data held 3 copies of it: 3.5 GB for 48 000 CIFAR images)."""
    n = len(x)
    total = np.zeros(int(np.prod(x.shape[1:])))
    for start in range(0, n, block):
        total += _as_unit_float64(x[start : start + block]).sum(0)
    mean = total / n
    cov = np.zeros((len(mean), len(mean)))
    for start in range(0, n, block):
        centred = _as_unit_float64(x[start : start + block])  # a new array: centred in place
        centred -= mean
        cov += centred.T @ centred
        del centred
    return mean, cov / (n - 1)


@register
class ReconstructionError(Detector):
    """MagNet's detector I: mean squared reconstruction error of the clean-trained autoencoder."""

    name = "magnet"

    def torch_scorer(self):
        ae = self.context.model("autoencoder", self.name).eval()
        return lambda x: ((ae(x) - x) ** 2).flatten(1).mean(1)


@register
class MagNetJSD(Detector):
    """MagNet's detector II (Meng & Chen 2017): Jensen-Shannon divergence between the classifier's
    softmax at temperature T on the image and on its autoencoder reconstruction."""

    name = "magnet_jsd"

    def torch_scorer(self):
        ae = self.context.model("autoencoder", self.name).eval()
        classifier = self.context.model("classifier", self.name).eval()
        t = float(self.settings["temperature"])

        def jsd(x):
            p = F.softmax(classifier(x) / t, 1)
            q = F.softmax(classifier(ae(x)) / t, 1)
            m = 0.5 * (p + q)
            kl = lambda a, b: (a * (torch.log(a.clamp_min(1e-12)) - torch.log(b.clamp_min(1e-12)))).sum(1)  # noqa: E731
            return 0.5 * kl(p, m) + 0.5 * kl(q, m)

        return jsd

    def views(self):
        ae = self.context.model("autoencoder", self.name).eval()
        return lambda x: [ae(x)]


@register
class FeatureSqueezing(Detector):
    """Feature squeezing (Xu, Evans & Qi, NDSS 2018): the largest L1 distance between the classifier's softmax
    on the image and on each squeezed version of it (bit-depth reduction, median smoothing). No parameters to
    learn; its threshold comes from the calibration split like every detector's. The squeezers round and take
    medians: the score is differentiated with BPDA (`squeezers.straight_through`), so the detector-aware attack
    attacks it through them (Athalye et al. 2018)."""

    name = "feature_squeezing"

    def torch_scorer(self):
        classifier = self.context.model("classifier", self.name).eval()
        bits, size = int(self.settings["bit_depth"]), int(self.settings["median_size"])
        squeezers = (lambda x: reduce_bit_depth(x, bits), lambda x: median_smooth(x, size))

        def score(x):
            p = F.softmax(classifier(x), 1)
            distances = [(p - F.softmax(classifier(squeeze(x)), 1)).abs().sum(1) for squeeze in squeezers]
            return torch.stack(distances, 1).amax(1)

        return score

    def views(self):
        bits, size = int(self.settings["bit_depth"]), int(self.settings["median_size"])
        return lambda x: [reduce_bit_depth(x, bits), median_smooth(x, size)]


@register
class Mahalanobis(Detector):
    """Lee, Lee, Lee & Shin (NeurIPS 2018): class-conditional Gaussians with one shared covariance on the
    classifier's penultimate features (`DetectorContext.features`) of every clean training image; score = the
    smallest Mahalanobis distance to a class mean (large: unlike every class of clean data). A detector never sees
    the class labels, so each clean image's class is the classifier's prediction. The paper's input
    pre-processing and its logistic regression over several layers (which learns from attacked examples) are left
    out: this is its single-layer, attack-agnostic score. Differentiable: the detector-aware attack goes through
    the classifier and the distance."""

    name = "mahalanobis"
    batch = 500

    def fit(self, x, y, clean_pool=None) -> None:
        clean = clean_pool if clean_pool is not None else x[y < 0.5]
        device = self.context.device
        classifier = self.context.model("classifier", self.name).eval()
        features, predicted = [], []
        with torch.no_grad():
            for start in range(0, len(clean), self.batch):
                block = torch.from_numpy(np.ascontiguousarray(clean[start : start + self.batch])).to(device)
                block = block.float() / 255.0 if block.dtype == torch.uint8 else block.float()
                features.append(self.context.features(block, self.name).double().cpu())
                predicted.append(classifier(block).argmax(1).cpu())
        f, c = torch.cat(features), torch.cat(predicted)
        classes = sorted(set(c.tolist()))
        means = torch.stack([f[c == k].mean(0) for k in classes])
        centred = f - means[torch.searchsorted(torch.tensor(classes), c)]
        covariance = centred.T @ centred / len(f)
        # pseudo-inverse: ReLU features can leave directions without variance
        self.precision = torch.linalg.pinv(covariance, hermitian=True).float()
        self.means = means.float()
        self.fitted_on = len(f)
        log.info(
            "mahalanobis: fitted on %d clean training images, %d-dimensional features, %d predicted classes",
            len(f),
            f.shape[1],
            len(classes),
        )

    def torch_scorer(self):
        device = self.context.device
        means, precision = self.means.to(device), self.precision.to(device)

        def score(x):
            d = self.context.features(x, self.name)[:, None, :] - means[None]  # N x classes x D
            return torch.einsum("ncd,de,nce->nc", d, precision, d).amin(1)

        return score


def lid_estimates(points: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """Maximum-likelihood local intrinsic dimensionality of each row of `points` from its distances r_1 <= ... <=
    r_k to its `k` nearest rows of `reference` (Levina & Bickel 2004, as Ma et al. 2018 use it):
    -1 / mean_i log(r_i / r_k). A reference row at distance 0 (the point itself) is not a neighbour.

    In float64: `cdist` goes through |p|^2 + |r|^2 - 2 p.r for large inputs, which leaves a point's distance to
    its own copy at about sqrt(machine eps) * |p| rather than 0 (5e-8 in float64, 4e-4 in float32, and varying
    with the thread count); "distance 0" is therefore "below 1e-6 of the two norms", far above float64's
    rounding and far below any two different images' representations."""
    p, r = points.double(), reference.double()
    d = torch.cdist(p, r)
    itself = d <= 1e-6 * (p.norm(dim=1, keepdim=True) + r.norm(dim=1)[None])
    d = torch.where(itself, torch.full_like(d, float("inf")), d)
    nearest = torch.topk(d, k, dim=1, largest=False).values  # ascending
    return (-1.0 / torch.log(nearest / nearest[:, -1:]).mean(1).clamp(max=-1e-12)).to(points.dtype)


@register
class LID(Detector):
    """Ma et al. (ICLR 2018): the local intrinsic dimensionality of an image's representation at several layers of
    the classifier, estimated from its distances to its `k` nearest neighbours among the same layer's
    representations of `reference` clean training images (maximum likelihood: LID = -1 / mean_i log(r_i / r_k)),
    and a logistic regression on those estimates, trained on clean against attacked examples (supervised: one per
    attack key, as the paper). Layers: the stages of a classifier trained here (ResNet: layer1..layer3), its
    penultimate layer and its logits (a brought model: penultimate and logits). The reference images are fixed when it is fitted, so a
    score depends on the image alone (the paper draws neighbours from the test minibatch). Differentiable, so the
    detector-aware attack goes through it (Athalye et al. 2018 found LID broken by adaptive attacks)."""

    name = "lid"

    def _representations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's representation of `x` (flattened) and the logits, from one forward pass."""
        reader = self.context.feature_reader(self.name)
        return reader.many(x, reader.blocks())

    def _lids(self, x: torch.Tensor) -> torch.Tensor:
        """N x layers LID estimates of `x` against the reference representations."""
        k = int(self.settings["k"])
        return torch.stack(
            [lid_estimates(rep, ref, k) for rep, ref in zip(self._representations(x), self.reference)], 1
        )

    def fit(self, x, y, clean_pool=None) -> None:
        ctx = self.context
        generator = seed_everything(ctx.seed)
        clean = np.flatnonzero(np.asarray(y) < 0.5)
        n_ref = int(self.settings["reference"])
        if len(clean) <= max(n_ref, int(self.settings["k"])):
            raise ConfigError(
                f"detection.lid.reference: {n_ref} reference images (and k {self.settings['k']}) need more clean "
                f"training images than the {len(clean)} there are"
            )
        pick = clean[torch.randperm(len(clean), generator=generator)[:n_ref].numpy()]
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(ctx.device)
        with torch.no_grad():
            self.reference = [r.detach() for r in self._representations(xt[pick])]
            lids = torch.cat([self._lids(xt[s : s + 500]) for s in range(0, len(xt), 500)]).double()
        target = torch.from_numpy(np.asarray(y, dtype=np.float64)).to(lids.device)
        self.mean, self.std = lids.mean(0), lids.std(0).clamp_min(1e-12)
        z = (lids - self.mean) / self.std
        weight = torch.zeros(z.shape[1], dtype=torch.float64, device=z.device, requires_grad=True)
        bias = torch.zeros(1, dtype=torch.float64, device=z.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")
        pos_weight = torch.tensor((1 - target).sum() / target.sum().clamp_min(1), device=z.device)

        def closure():
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(z @ weight + bias, target, pos_weight=pos_weight)
            loss = loss + 1e-4 * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():  # per unit of weight: ln 2 at chance, as `trained` reads it
            losses = F.binary_cross_entropy_with_logits(z @ weight + bias, target, reduction="none")
            weights = torch.where(target > 0.5, pos_weight, torch.ones_like(target))
            self.final_loss = float((weights * losses).sum() / weights.sum())
        self.weight, self.bias = weight.detach().float(), bias.detach().float()
        self.mean, self.std = self.mean.float(), self.std.float()
        log.info(
            "lid %s: %d layers, reference %d clean images, k %d, logistic loss %.4f",
            self.tag,
            len(self.reference),
            n_ref,
            int(self.settings["k"]),
            self.final_loss,
        )

    def torch_scorer(self):
        def score(x):
            return ((self._lids(x) - self.mean) / self.std) @ self.weight + self.bias

        return score


@register
class BitsPerDim(Detector):
    """Likelihood detector: the Glow's bits/dim of the image (already stored with every latent)."""

    name = "bits_per_dim"

    def torch_scorer(self):
        return lambda bpd: bpd.flatten(1)[:, 0]


@register
class OffGridPixels(Detector):
    """Control, no parameters: the share of pixels that are not on the 8-bit grid k/255. Clean images are
    all on it; float adversarials are not. What this scores is what the stored file format gives away."""

    name = "offgrid"
    tolerance = 1e-3  # in units of 1/255; float32 holds k/255 to about 1e-5 of them

    def score(self, x, batch_size=500):
        q = np.asarray(x, dtype=np.float64).reshape(len(x), -1) * 255.0
        return (np.abs(q - np.rint(q)) > self.tolerance).mean(1)


# the plug-in files last: their classes register with the built-ins above (advdefense.plan.plugins)
load_plugin_modules()
