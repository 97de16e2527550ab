"""Detection stage (paper method 2) and its baselines, evaluated the way a reviewer would ask for.

Every detector (`detectors.REGISTRY`) turns an image, its Glow latent or its bits/dim into a score,
larger = "attacked". Supervised detectors train on the *training* split (its clean images and their
attacked versions); every detector is evaluated on the *test* split. The rules of the evaluation:

- **Honest sets.** An attacked image counts only if the attack changed it, the classifier got the
  clean image right and gets the attacked one wrong (`AttackedSet.honest`): DeepFool returns
  misclassified inputs unchanged, and those byte-identical copies are not "attacks". Training uses the
  same rule. The paper's all-images sets stay as secondary rows (`set = all`), with the no-op count.
- **Calibrated thresholds.** A score is flagged when it exceeds the threshold that flags `fpr` of the
  clean *calibration* split (held out of training, never the test split); the tables report the TPR at
  those thresholds and the FPR they realise on the clean test images.
- **Controls.** Uniform and sign noise at each eps (flag rates), and the zero-parameter off-grid
  detector (`offgrid`), which shows what the 8-bit fingerprint of float adversarials gives away.
- **Did not train.** A supervised detector whose final training loss stayed within 0.02 of ln 2 is
  marked `trained = False`; the tables print "did not train" instead of its numbers.

One detector per attack key plus one trained on all keys pooled; each is evaluated on every key (the
generalisation matrix). `mmd` (a two-sample test on batches) is its own rule.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .attack_files import read_attack_file
from .aware import run_aware_attacks
from .classifier import load_classifier
from .corrupted_files import read_corrupted_file
from .data import DatasetFile
from .detectors import DetectorContext, detector_class
from .errors import ConfigError, PipelineFileError
from .flow import latents_of, load_flow
from .h5io import atomic_path
from .inference import evaluation_model
from .latent_files import read_latents
from .metrics import auroc
from .plan.detector_specs import FLOW_FIELD
from .plan.jobs import DetectionJob
from .plan.names import POOLED, control_key, corruption_key, fpr_label
from .purifiers import load_autoencoder
from .runtime import resolve_device
from .score_files import write_scores
from .training import seed_everything

log = logging.getLogger(__name__)
SETS = ("honest", "all")


# ----------------------------------------------------------------------------- inputs
@dataclass
class AttackedSet:
    """The attacked versions of a split's attacked images under one attack key, aligned with the clean ones."""

    attacked: np.ndarray  # N x ... detector inputs
    label: np.ndarray
    pred_clean: np.ndarray
    pred_adv: np.ndarray
    changed: np.ndarray  # bool: the attack changed the image

    @property
    def success(self) -> np.ndarray:
        return self.pred_adv != self.label

    @property
    def honest(self) -> np.ndarray:
        """Changed, correctly classified when clean and misclassified after the attack."""
        return self.changed & (self.pred_clean == self.label) & self.success

    def mask(self, which: str) -> np.ndarray:
        return self.honest if which == "honest" else np.ones(len(self.label), bool)


@dataclass
class SplitInputs:
    """Detector inputs of one split: its clean attacked-subset images and every key's attacked versions."""

    clean: np.ndarray
    index: np.ndarray
    attacks: dict[str, AttackedSet]


def _attacked_set(x, source) -> AttackedSet:
    """`x`: the detector inputs of an attack's adversarials; `source`: its attack or latents file (`AttackArrays`,
    `LatentArrays`), which says what the attack did to each image."""
    return AttackedSet(x, source.label, source.pred_clean, source.pred_adv, source.linf > 0)


def _check_aligned(path, index, reference_index, reference_path):
    if not np.array_equal(index, reference_index):
        raise PipelineFileError(f"{path}: its images do not line up with {reference_path} (different index)")


def load_latent_inputs(clean_path, attack_paths: dict[str, str], field: str = "z") -> SplitInputs:
    """`field` z (latent detectors) or bpd (the likelihood detector) of clean and attacked latents files."""
    clean = read_latents(clean_path)
    attacks = {}
    for key, path in attack_paths.items():
        adv = read_latents(path)
        if adv.z.shape[1:] != clean.z.shape[1:]:
            raise PipelineFileError(
                f"{path}: latents of shape {adv.z.shape[1:]} cannot be mixed with {clean_path}'s {clean.z.shape[1:]}"
            )
        _check_aligned(path, adv.index, clean.index, clean_path)
        attacks[key] = _attacked_set(adv.field(field), adv)
    return SplitInputs(clean.field(field), clean.index, attacks)


def _dataset(data) -> DatasetFile:
    """The dataset file (its splits read on demand, each once), where the caller has not opened it yet."""
    return data if isinstance(data, DatasetFile) else DatasetFile(data)


def load_pixel_inputs(dataset, split: str, attack_paths: dict[str, str]) -> SplitInputs:
    """`dataset`: the dataset file's path or its `DatasetFile`."""
    dataset = _dataset(dataset)
    data = dataset.split(split)
    attacks, index, first = {}, None, None
    for key, path in attack_paths.items():
        a = read_attack_file(
            path,
            require=("adv", "index", "label", "pred_clean", "pred_adv", "linf"),
            data=dataset,
            split=split,
        )
        if index is None:
            index, first = a.index, path
        _check_aligned(path, a.index, index, first)
        attacks[key] = _attacked_set(a.adv, a)
    if index is None:
        raise ConfigError("detection: no attack files to evaluate (configure at least one attack)")
    return SplitInputs(data.images[index].astype(np.float32) / 255.0, index, attacks)


def load_inputs(kind: str, split: str, files: dict, keys: list[str], data: DatasetFile) -> SplitInputs:
    """Detector inputs of `split` for a detector whose inputs are `kind` (pixels | latent | bpd); `files`:
    the named inputs of the detect job, `data` the contents of its dataset file."""
    attack_files = {key: files[f"{key}__{split}"] for key in keys}
    field = FLOW_FIELD[kind]
    if field is None:
        return load_pixel_inputs(data, split, attack_files)
    return load_latent_inputs(files[f"clean__{split}"], attack_files, field)


def calibration_inputs(kind: str, files: dict, data: DatasetFile) -> np.ndarray:
    """Clean calibration images (pixels) or their latents/bits-per-dim."""
    if FLOW_FIELD[kind] is None:
        return data.split("calibration").images.astype(np.float32) / 255.0
    return read_latents(files["clean__calibration"]).field(FLOW_FIELD[kind])


def clean_training_pool(kind: str, files: dict, data: DatasetFile) -> np.ndarray:
    """Every clean training input (detectors that model clean data fit on all of them): for pixel detectors the
    uint8 images as stored (a detector converts them a block at a time: 48 000 images are 147 MB as uint8 and
    590 MB as float32), else the latents or bits/dim of the attacked training images."""
    if FLOW_FIELD[kind] is None:
        return data.split("train").images
    return read_latents(files["clean__train"]).field(FLOW_FIELD[kind])


def training_sets(train: SplitInputs, key: str) -> list[AttackedSet]:
    """The attacked training sets the detector of `key` (or all keys pooled) learns from; each must hold
    honest adversarials."""
    keys = sorted(train.attacks) if key == POOLED else [key]
    if key != POOLED and key not in train.attacks:
        raise ConfigError(f"detection: no training inputs for {key} (have {sorted(train.attacks)})")
    for k in keys:
        s = train.attacks[k]
        if not s.honest.any():
            raise ConfigError(
                f"detection: the attack {k} has no successful adversarials among the training images "
                f"({int(s.changed.sum())} of {len(s.changed)} changed, {int(s.success.sum())} "
                f"misclassified); a detector cannot learn it; strengthen or drop the attack"
            )
    return [train.attacks[k] for k in keys]


def training_size(train: SplitInputs, key: str) -> int:
    """How many examples `training_arrays(train, key)` holds, without building them."""
    return len(train.clean) + sum(int(s.honest.sum()) for s in training_sets(train, key))


def training_arrays(train: SplitInputs, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels (0 clean, 1 attacked) for the detector of `key` (or all keys pooled): the clean
    training images and the honest attacked ones."""
    attacked = np.concatenate([s.attacked[s.honest] for s in training_sets(train, key)])
    x = np.concatenate([train.clean, attacked])
    y = np.concatenate([np.zeros(len(train.clean)), np.ones(len(attacked))]).astype(np.float32)
    return x, y


# ----------------------------------------------------------------------------- noise controls
def noise_images(clean01: np.ndarray, kind: str, eps: float, seed: int) -> np.ndarray:
    """The clean images plus uniform noise in [-eps, eps] or sign noise of +-eps, clipped to [0, 1]."""
    rng = np.random.default_rng([seed, int(round(eps * 1e6)), {"uniform": 1, "sign": 2}[kind]])
    if kind == "uniform":
        delta = rng.uniform(-eps, eps, clean01.shape)
    else:
        delta = eps * rng.choice([-1.0, 1.0], clean01.shape)
    return np.clip(clean01 + delta, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- thresholds and metrics
def calibrate(calibration_scores: np.ndarray, fprs) -> dict[float, float]:
    """{fpr: threshold}: flagging scores above the threshold flags at most `fpr` of the calibration images."""
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))[::-1]
    n = len(scores)
    if not np.isfinite(scores).all():
        raise ValueError("calibration scores must be finite")
    out = {}
    for fpr in fprs:
        k = int(math.floor(fpr * n + 1e-9))
        if k < 1:
            raise ConfigError(
                f"detection.fprs: {fpr} is below 1/{n}, the smallest false-positive rate that "
                f"{n} calibration images can set a threshold for; raise dataset.calibration_size "
                f"to at least {math.ceil(1 / fpr)} or drop {fpr}"
            )
        out[float(fpr)] = float(scores[k])
    return out


def threshold_metrics(clean: np.ndarray, attacked: np.ndarray, thresholds: dict[float, float]) -> dict:
    """AUROC, and at each calibrated threshold the TPR on `attacked` and the FPR realised on `clean`;
    accuracy: balanced accuracy at the largest FPR's threshold."""
    out = {
        "n_clean": len(clean),
        "n_attacked": len(attacked),
        "auroc": auroc(clean, attacked) if len(attacked) else float("nan"),
    }
    for fpr, t in sorted(thresholds.items()):
        label = fpr_label(fpr)
        out[f"tpr_at_fpr{label}"] = float((attacked > t).mean()) if len(attacked) else float("nan")
        out[f"fpr_test_at_fpr{label}"] = float((clean > t).mean())
    t = thresholds[max(thresholds)]
    out["accuracy"] = (
        float(0.5 * ((clean <= t).mean() + (attacked > t).mean())) if len(attacked) else float("nan")
    )
    return out


def evaluate_detector(
    detector,
    test: SplitInputs,
    thresholds: dict,
    controls: dict[str, np.ndarray],
    scores: dict,
    corruptions: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Rows of one detector: every test key and all keys pooled, honest and all-images sets, the noise controls
    (set `control`) and the corrupted clean images (set `corruption`: their flag rates are false alarms)."""
    clean = detector.score(test.clean)
    scores["clean"] = clean
    rows = []
    pooled = {which: [] for which in SETS}
    for key in sorted(test.attacks):
        s = test.attacks[key]
        adv = detector.score(s.attacked)
        scores[key] = adv
        for which in SETS:
            m = s.mask(which)
            pooled[which].append(adv[m])
            rows.append(
                {
                    "test": key,
                    "set": which,
                    "n_noop": int((~s.changed).sum()),
                    **threshold_metrics(clean, adv[m], thresholds),
                }
            )
    for which in SETS:
        rows.append(
            {
                "test": POOLED,
                "set": which,
                "n_noop": int(sum((~s.changed).sum() for s in test.attacks.values())),
                **threshold_metrics(clean, np.concatenate(pooled[which]), thresholds),
            }
        )
    for name, x in sorted(controls.items()):
        noise = detector.score(x)
        scores[name] = noise
        rows.append(
            {"test": name, "set": "control", "n_noop": 0, **threshold_metrics(clean, noise, thresholds)}
        )
    for name, x in (corruptions or {}).items():  # in corruption, then severity order
        corrupted = detector.score(x)
        scores[name] = corrupted
        rows.append(
            {
                "test": name,
                "set": "corruption",
                "n_noop": 0,
                **threshold_metrics(clean, corrupted, thresholds),
            }
        )
    return rows


# ----------------------------------------------------------------------------- one method
@dataclass
class DetectionInputs:
    """What a detector sees: the `train` and `test` splits' inputs, the clean `calibration` inputs its thresholds
    come from, the clean training pool an unsupervised detector fits on (`clean_pool`), and the test-time noise
    `controls` and `corruptions` ({key: inputs}) whose flag rates are reported."""

    train: SplitInputs
    test: SplitInputs
    calibration: np.ndarray
    clean_pool: np.ndarray | None = None
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    corruptions: dict[str, np.ndarray] = field(default_factory=dict)


def run_detection_method(
    job: DetectionJob, inputs: DetectionInputs, workdir, *, models: dict | None = None, device: str = "auto"
) -> tuple[pd.DataFrame, dict]:
    """Fit the job's detector (one per key and one pooled when it is supervised, once otherwise), calibrate
    its thresholds on the clean calibration inputs at the job's false-positive rates, evaluate it on every test
    key, control and corruption. Returns (the long table, {training key: fitted detector})."""
    device = resolve_device(device)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    method, seed, train = job.method, job.seed, inputs.train
    cls = detector_class(method)
    context = DetectorContext(seed, device, workdir, models or {})
    keys = sorted(train.attacks) + [POOLED]
    rows, fitted = [], {}
    shared, evaluation = None, None
    for key in keys:
        fit_images = training_size(train, key)  # every key must have adversarials to learn from
        if cls.supervised or shared is None:
            x, y = training_arrays(train, key)
            seed_everything(seed)
            detector = cls(job.settings, context, key)
            detector.fit(x, y, inputs.clean_pool)
            detector.save()
            shared, evaluation = detector, None
        detector = shared
        fitted[key] = detector
        # a detector fitted once (not supervised: the same for every training key) is scored once: scoring it
        # again per key gave the same numbers at (keys + 1) times the cost
        if evaluation is None:
            calibration_scores = detector.score(inputs.calibration)
            thresholds = calibrate(calibration_scores, job.fprs)
            scores = {"calibration": calibration_scores}
            evaluation = (
                calibration_scores,
                thresholds,
                scores,
                evaluate_detector(
                    detector,
                    inputs.test,
                    thresholds,
                    inputs.controls,
                    scores,
                    # the corruptions' false alarms are the pooled detector's (the one a defence deploys, and
                    # the one the corruption table shows): scoring them again with each key's detector cost a
                    # supervised detector (keys + 1) times the scoring of 75 corrupted copies per test image
                    inputs.corruptions if key == POOLED or not cls.supervised else None,
                ),
            )
        calibration_scores, thresholds, scores, evaluated = evaluation
        write_scores(workdir, key, thresholds, scores)
        detector.thresholds = thresholds
        detector.calibration_scale = float(np.std(calibration_scores)) or 1.0
        for row in evaluated:
            rows.append(
                {
                    "method": method,
                    "train": key,
                    "trained": detector.trained,
                    "final_loss": detector.final_loss,
                    "fit_images": getattr(detector, "fitted_on", fit_images),
                    **row,
                }
            )
        honest = [r for r in evaluated if r["set"] == "honest"]
        log.info(
            "%s trained on %s: %s",
            method,
            key,
            ", ".join(f"{r['test']} auroc {r['auroc']:.3f}" for r in honest),
        )
    return pd.DataFrame(rows), fitted


# ----------------------------------------------------------------------------- the stage
def _stage_models(cls, files: dict, aware: bool, device) -> dict:
    """Evaluation copies (eval mode, frozen) of the other stages' models this detector (or the
    detector-aware attack, which needs the classifier) uses."""
    needs = cls.spec.models(attacked=aware)
    loaders = {"classifier": load_classifier, "flow": load_flow, "autoencoder": load_autoencoder}
    return {name: evaluation_model(loaders[name](files[name], device), device) for name in sorted(needs)}


def _control_inputs(
    kind: str,
    clean01: np.ndarray,
    epsilons,
    controls: list[str],
    seed: int,
    models: dict,
    batch_size: int,
    device,
) -> dict[str, np.ndarray]:
    out = {}
    for eps in epsilons:
        for noise in controls:
            x = noise_images(clean01, noise, eps, seed)
            if FLOW_FIELD[kind] is not None:
                z, bpd = latents_of(models["flow"], x, batch_size, device)
                x = z if FLOW_FIELD[kind] == "z" else bpd.astype(np.float32)[:, None]
            out[control_key(noise, eps)] = x
    return out


def _corruption_inputs(
    kind: str, files: dict, test_index: np.ndarray, labels: np.ndarray, models: dict, batch_size: int, device
) -> dict[str, np.ndarray]:
    """{corruption_key: detector inputs} of the corrupted versions of the evaluated clean test images (positions
    `test_index`; those of them the files hold, `corruptions.images`), from the job's `corrupted__<corruption>`
    inputs, in corruption then severity order."""
    out = {}
    for name in sorted(k for k in files if k.startswith("corrupted__")):
        corruption = name[len("corrupted__") :]
        f = read_corrupted_file(files[name], expect_corruption=corruption)
        held = f.present(test_index)
        if not held.any():
            raise PipelineFileError(
                f"{f.path}: holds none of the evaluated test images (made for another run?)"
            )
        rows = f.rows_of(test_index[held])
        if not np.array_equal(f.label[rows], labels[held]):
            raise PipelineFileError(
                f"{f.path}: its labels are not the dataset's for the evaluated test images"
            )
        for severity in f.severities:
            x = f.images(severity, rows).astype(np.float32) / 255.0
            if FLOW_FIELD[kind] is not None:
                z, bpd = latents_of(models["flow"], x, batch_size, device)
                x = z if FLOW_FIELD[kind] == "z" else bpd.astype(np.float32)[:, None]
            out[corruption_key(corruption, severity)] = x
    return out


def run_detection_stage(
    job: DetectionJob,
    files: dict,
    evaluation_path,
    aware_path,
    workdir,
    *,
    device: str = "auto",
    batch_size: int = 256,
) -> None:
    """Stage entry point (rule `detect`): `files` are the job's named inputs; writes the evaluation table, the
    detector-aware attack's table (empty unless the job runs it) and the fitted detectors and their score files
    into `workdir`."""
    device = resolve_device(device)
    cls = detector_class(job.method)
    kind = cls.inputs
    models = _stage_models(cls, files, job.runs_aware, device)
    data = DatasetFile(files["data"])  # each split read once, and only the ones this detector uses
    train, test = (
        load_inputs(kind, "train", files, job.keys, data),
        load_inputs(kind, "test", files, job.keys, data),
    )
    test_split = data.split("test")
    test_pixels = test_split.images[test.index].astype(np.float32) / 255.0
    inputs = DetectionInputs(
        train,
        test,
        calibration_inputs(kind, files, data),
        clean_pool=clean_training_pool(kind, files, data) if not cls.supervised else None,
        controls=_control_inputs(
            kind, test_pixels, job.epsilons, job.controls, job.seed, models, batch_size, device
        ),
        corruptions=_corruption_inputs(
            kind, files, test.index, test_split.labels[test.index], models, batch_size, device
        ),
    )
    table, fitted = run_detection_method(job, inputs, workdir, models=models, device=str(device))
    # the test key's attack and epsilon (empty for the pooled set and the noise controls)
    table.insert(table.columns.get_loc("test") + 1, "test_attack", table["test"].map(job.key_attack))
    table.insert(table.columns.get_loc("test_attack") + 1, "test_epsilon", table["test"].map(job.key_eps))
    with atomic_path(evaluation_path) as tmp:
        table.to_csv(tmp, index=False)
    rows = []
    if job.runs_aware:
        run = job.aware_run()
        detector = fitted[POOLED]
        n = run.settings["images"] or len(test.index)
        if n > len(test.index):
            raise ConfigError(
                f"detection.aware.images: {n} is more than the {len(test.index)} attacked test images"
            )
        oblivious: dict = {}
        for key, s in test.attacks.items():
            flagged = detector.score(s.attacked[:n]) > detector.thresholds[run.fpr]
            oblivious.setdefault(job.key_eps[key], {})[key] = (s.pred_adv[:n], s.label[:n], flagged)
        torch.manual_seed(job.seed)
        rows = run_aware_attacks(
            run,
            models["classifier"],
            detector,
            test_pixels[:n],
            test_split.labels[test.index[:n]],
            oblivious,
            device,
        )
    with atomic_path(aware_path) as tmp:
        pd.DataFrame(rows, columns=None if rows else ["method", "epsilon"]).to_csv(tmp, index=False)


# ----------------------------------------------------------------------------- MMD two-sample test
def _mmd2_unbiased(k: torch.Tensor, m: int) -> torch.Tensor:
    """Unbiased MMD^2 for kernel matrix `k` of [X; Y] with |X| = |Y| = m; works on a batch of
    permutations (k: P x 2m x 2m)."""
    kxx = k[..., :m, :m]
    kyy = k[..., m:, m:]
    kxy = k[..., :m, m:]
    diag = torch.diagonal(kxx, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(kyy, dim1=-2, dim2=-1).sum(-1)
    return (kxx.sum((-2, -1)) + kyy.sum((-2, -1)) - diag) / (m * (m - 1)) - 2 * kxy.mean((-2, -1))


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    permutations: int,
    generator: torch.Generator,
    bandwidth: float | None = None,
) -> float:
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


def mmd_power(
    reference: np.ndarray,
    clean_test: np.ndarray,
    attacked: dict[str, np.ndarray],
    batch_sizes,
    trials: int,
    permutations: int,
    alpha: float,
    seed: int,
) -> pd.DataFrame:
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
            rows.append(
                {"test": name, "batch_size": b, "rejection_rate": rejected / trials, "trials": trials}
            )
    return pd.DataFrame(rows)
