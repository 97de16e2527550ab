"""Detection stage (paper method 2) and the baselines it is compared with, all on the same images.

Every detector turns an image (or its Glow latent) into a score, larger = "attacked". Trained on
the *training* split (clean images and their attacked versions), evaluated on the *test* split:

- ``latent_mlp``: the paper's 5-layer MLP on the top Glow latent;
- ``pixel_cnn``: a separate binary CNN on raw pixels (Gong et al. 2017);
- ``pca``: energy in the low-variance principal components of clean images (Hendrycks & Gimpel 2016);
- ``magnet``: autoencoder reconstruction error (MagNet), with the purification autoencoder;
- ``mmd``: kernel MMD two-sample test on batches (Grosse et al. 2017): detection power vs batch size.

One detector per (attack, eps) "key" plus one trained on all keys pooled; each is evaluated on
every key, which gives the generalisation matrix.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .attacks import eps_tag, read_attack_file
from .errors import ConfigError, PipelineFileError
from .runtime import resolve_device
from .data import read_dataset_h5
from .flow import read_latents
from .metrics import best_threshold, detection_metrics
from .models import save_checkpoint
from .models.detectors import LatentMLP, PixelCNNDetector
from .training import TrainingRun, fit, run_settings, seed_everything

log = logging.getLogger(__name__)
POOLED = "overall"  # the detector trained on all attacks pooled, and the pooled test set
METHODS = ("latent_mlp", "pixel_cnn", "pca", "magnet")


def attack_key(attack: str, eps: float) -> str:
    return f"{attack}_eps{eps_tag(eps)}"


@dataclass
class DetectionSet:
    """Clean and attacked inputs of one split for one key, aligned by image index."""

    clean: np.ndarray  # N x ...
    attacked: np.ndarray  # N x ...
    success: np.ndarray  # N bool


# ----------------------------------------------------------------------------- inputs
def load_latent_sets(clean_path, attack_paths: dict[str, str]) -> dict[str, DetectionSet]:
    clean = read_latents(clean_path)
    sets = {}
    for key, path in attack_paths.items():
        adv = read_latents(path)
        if adv["z"].shape[1:] != clean["z"].shape[1:]:
            raise PipelineFileError(f"{path}: latents of shape {adv['z'].shape[1:]} cannot be mixed with "
                              f"{clean_path}'s {clean['z'].shape[1:]}")
        if not np.array_equal(adv["index"], clean["index"]):
            raise PipelineFileError(f"{path}: its images do not line up with {clean_path} (different index)")
        sets[key] = DetectionSet(clean["z"], adv["z"], adv["success"].astype(bool))
    return sets


def load_pixel_sets(dataset_path, split: str, attack_paths: dict[str, str]) -> dict[str, DetectionSet]:
    data = read_dataset_h5(dataset_path).split(split)
    sets = {}
    for key, path in attack_paths.items():
        a = read_attack_file(path, require=("adv", "index", "success"))
        sets[key] = DetectionSet(data.images[a["index"]].astype(np.float32) / 255.0, a["adv"], a["success"])
    return sets


def check_training_set(sets: dict[str, DetectionSet], key: str) -> None:
    for k, s in sets.items():
        if len(s.clean) == 0 or len(s.attacked) == 0:
            raise ConfigError(f"detection: the training set for {k} is empty or has one class only "
                              f"({len(s.clean)} clean, {len(s.attacked)} attacked)")
    if key != POOLED and key not in sets:
        raise ConfigError(f"detection: no latents/attack files for {key} (have {sorted(sets)})")


def training_arrays(sets: dict[str, DetectionSet], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels (0 clean, 1 attacked) for the detector of `key` (or all keys pooled)."""
    keys = sorted(sets) if key == POOLED else [key]
    clean = sets[keys[0]].clean
    attacked = np.concatenate([sets[k].attacked for k in keys])
    x = np.concatenate([clean, attacked])
    y = np.concatenate([np.zeros(len(clean)), np.ones(len(attacked))]).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- detectors
class BinaryObjective:
    def __init__(self, model, pos_weight: float):
        self.model = model
        self.pos_weight = pos_weight

    def __call__(self, batch, generator):
        x, y = batch
        logits = self.model(x)
        weight = torch.where(y > 0.5, torch.full_like(y, self.pos_weight), torch.ones_like(y))
        loss = F.binary_cross_entropy_with_logits(logits, y, weight=weight)
        correct = ((logits.detach() > 0).float() == y).sum()
        return loss, {"loss": loss.detach() * len(y), "accuracy": correct}


class TrainedDetector:
    """A neural detector (latent MLP or pixel CNN) trained with the shared loop; score = logit."""

    def __init__(self, model: torch.nn.Module, settings: dict, device, seed: int, workdir: Path, name: str):
        self.model = model.to(device)
        self.settings = settings
        self.device = device
        self.seed = seed
        self.workdir = Path(workdir)
        self.name = name
        self.threshold = 0.0  # decide at logit 0, the decision the (class-balanced) loss trains for

    def fit(self, x: np.ndarray, y: np.ndarray) -> list[dict]:
        settings = self.settings
        generator = seed_everything(self.seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        yt = torch.from_numpy(y).to(self.device)
        if hasattr(self.model, "standardize"):
            self.model.standardize.fit(xt.flatten(1))
        n_pos = float(y.sum())
        pos_weight = (len(y) - n_pos) / n_pos
        optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
        run = TrainingRun(self.workdir / f"{self.name}.state.pt", self.workdir / f"{self.name}.epochs.csv",
                          {**run_settings("detection", settings, self.seed), "examples": len(y)})
        history = fit(self.model, BinaryObjective(self.model, pos_weight), (xt, yt), optimizer, {"name": "cosine"},
                      settings["epochs"], settings["batch_size"], generator, run, name=self.name)
        run.state_path.unlink(missing_ok=True)
        return history

    @torch.inference_mode()
    def score(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        self.model.eval()
        out = []
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            out.append(self.model(xb.to(self.device)).float().cpu().numpy())
        return np.concatenate(out)


class PCADetector:
    """Hendrycks & Gimpel 2016: adversarial images put more energy into the trailing principal
    components of clean data. Score = mean squared whitened coefficient beyond the first `skip`."""

    def __init__(self, skip_components: int):
        self.skip = skip_components

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        clean = x[y < 0.5].reshape((y < 0.5).sum(), -1).astype(np.float64)
        if self.skip >= min(clean.shape) - 1:
            raise ConfigError(f"detection.pca.skip_components: {self.skip} leaves no components "
                              f"({len(clean)} clean images of {clean.shape[1]} values)")
        self.mean = clean.mean(0)
        _, s, vt = np.linalg.svd(clean - self.mean, full_matrices=False)
        std = s / math.sqrt(len(clean) - 1)
        keep = std > 1e-8 * std[0]
        self.components = vt[keep][self.skip :]
        self.std = std[keep][self.skip :]
        self.threshold = best_threshold(*self._split_scores(x, y))

    def _split_scores(self, x, y):
        scores = self.score(x)
        return scores[y < 0.5], scores[y > 0.5]

    def score(self, x: np.ndarray) -> np.ndarray:
        coeff = (x.reshape(len(x), -1).astype(np.float64) - self.mean) @ self.components.T / self.std
        return (coeff**2).mean(1)


class ReconstructionErrorDetector:
    """MagNet: mean squared reconstruction error of the (clean-trained) autoencoder."""

    def __init__(self, autoencoder: torch.nn.Module, device, batch_size: int = 500):
        self.autoencoder = autoencoder.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    def fit(self, x, y) -> None:
        scores = self.score(x)
        self.threshold = best_threshold(scores[y < 0.5], scores[y > 0.5])

    @torch.inference_mode()
    def score(self, x: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(x), self.batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + self.batch_size])).to(self.device).float()
            out.append(((self.autoencoder(xb) - xb) ** 2).flatten(1).mean(1).cpu().numpy())
        return np.concatenate(out)


# ----------------------------------------------------------------------------- evaluation
def evaluate_detector(detector, test_sets: dict[str, DetectionSet], scores: dict | None = None) -> list[dict]:
    """Metrics of one trained detector on every test key and on all keys pooled; the raw scores
    go into `scores` (clean, and each key) when given."""
    rows, pooled_adv, pooled_success = [], [], []
    clean_scores = None
    for key in sorted(test_sets):
        s = test_sets[key]
        clean_scores = detector.score(s.clean) if clean_scores is None else clean_scores
        adv_scores = detector.score(s.attacked)
        if scores is not None:
            scores["clean"], scores[key] = clean_scores, adv_scores
        pooled_adv.append(adv_scores)
        pooled_success.append(s.success)
        rows.append({"test": key, **detection_metrics(clean_scores, adv_scores, detector.threshold, s.success)})
    rows.append({"test": POOLED, **detection_metrics(clean_scores, np.concatenate(pooled_adv), detector.threshold,
                                                      np.concatenate(pooled_success))})
    return rows


def build_detector(method: str, settings: dict, seed: int, x: np.ndarray, device, workdir: Path, key: str,
                   autoencoder=None):
    """The untrained detector `method` with its `detection.<method>` settings, for inputs like `x`."""
    seed_everything(seed)  # before building the model: its initial weights come from this seed
    if method == "latent_mlp":
        model = LatentMLP(int(np.prod(x.shape[1:])), settings["widths"], settings["dropout"])
        return TrainedDetector(model, settings, device, seed, workdir, key)
    if method == "pixel_cnn":
        return TrainedDetector(PixelCNNDetector(settings["width"]), settings, device, seed, workdir, key)
    if method == "pca":
        return PCADetector(settings["skip_components"])
    if method == "magnet":
        if autoencoder is None:
            raise ConfigError("detection.methods: 'magnet' needs the purification autoencoder")
        return ReconstructionErrorDetector(autoencoder, device)
    raise ConfigError(f"detection.methods: unknown method {method!r} (use {', '.join(METHODS)} or mmd)")


def run_detection_method(method: str, settings: dict, seed: int, train_sets: dict[str, DetectionSet],
                         test_sets: dict[str, DetectionSet], workdir, autoencoder=None, *,
                         device: str = "auto") -> pd.DataFrame:
    """Train one detector `method` (with its `detection.<method>` settings) per key and one pooled;
    evaluate each on every key. Returns the long table."""
    device = resolve_device(device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for key in sorted(train_sets) + [POOLED]:
        check_training_set(train_sets, key)
        x, y = training_arrays(train_sets, key)
        detector = build_detector(method, settings, seed, x, device, workdir, key, autoencoder)
        detector.fit(x, y)
        if isinstance(detector, TrainedDetector):
            save_checkpoint(workdir / f"{key}.pt", "detector", detector.model, {"trained_on": key, "method": method})
        scores: dict[str, np.ndarray] = {}
        evaluated = evaluate_detector(detector, test_sets, scores)
        np.savez(workdir / f"scores_{key}.npz", threshold=detector.threshold, **scores)
        for row in evaluated:
            rows.append({"method": method, "train": key, **row})
        log.info("%s trained on %s: %s", method, key,
                 ", ".join(f"{r['test']} acc {100 * r['accuracy']:.1f}% auroc {r['auroc']:.3f}" for r in rows[-len(test_sets) - 1:]))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- MMD two-sample test
def _mmd2_unbiased(k: torch.Tensor, m: int) -> torch.Tensor:
    """Unbiased MMD^2 for kernel matrix `k` of [X; Y] with |X| = |Y| = m; works on a batch of
    permutations (k: P x 2m x 2m)."""
    kxx = k[..., :m, :m]
    kyy = k[..., m:, m:]
    kxy = k[..., :m, m:]
    diag = torch.diagonal(kxx, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(kyy, dim1=-2, dim2=-1).sum(-1)
    return (kxx.sum((-2, -1)) + kyy.sum((-2, -1)) - diag) / (m * (m - 1)) - 2 * kxy.mean((-2, -1))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, generator: torch.Generator,
             bandwidth: float | None = None) -> float:
    """p-value of the kernel two-sample test (Gaussian kernel, unbiased MMD^2, permutation null)."""
    m = len(x)
    if len(y) != m or m < 2:
        raise ValueError(f"mmd_test needs two samples of equal size >= 2, got {len(x)} and {len(y)}")
    z = torch.from_numpy(np.concatenate([x, y]).reshape(2 * m, -1).astype(np.float64))
    d2 = torch.cdist(z, z).pow(2)
    if bandwidth is None:
        bandwidth = float(torch.median(d2[d2 > 0]).sqrt()) if (d2 > 0).any() else 1.0
    k = torch.exp(-d2 / (2 * bandwidth**2))
    observed = _mmd2_unbiased(k, m)
    perms = torch.stack([torch.randperm(2 * m, generator=generator) for _ in range(permutations)])
    kp = k[perms[:, :, None], perms[:, None, :]]
    null = _mmd2_unbiased(kp, m)
    return float(((null >= observed).sum() + 1) / (permutations + 1))


def mmd_power(reference: np.ndarray, clean_test: np.ndarray, attacked: dict[str, np.ndarray], batch_sizes,
              trials: int, permutations: int, alpha: float, seed: int) -> pd.DataFrame:
    """For each batch size: how often a batch of attacked images (power) or of clean test images
    (false-positive rate) is rejected as 'not from the clean distribution' at level alpha."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = []
    for b in batch_sizes:
        if b > min(len(reference), len(clean_test), *(len(a) for a in attacked.values())):
            raise ConfigError(f"detection.mmd.batch_sizes: {b} is larger than the available images")
        for name, pool in [("clean", clean_test)] + sorted(attacked.items()):
            rejected = 0
            for _ in range(trials):
                ref = reference[rng.choice(len(reference), b, replace=False)]
                batch = pool[rng.choice(len(pool), b, replace=False)]
                rejected += mmd_test(ref, batch, permutations, generator) < alpha
            rows.append({"test": name, "batch_size": b, "rejection_rate": rejected / trials, "trials": trials})
    return pd.DataFrame(rows)
