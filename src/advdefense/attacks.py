"""Attack stage: Foolbox adversarial examples, one HDF5 file per (attack, epsilon, split).

File layout (`results/attacks/<dataset>/<attack>/eps<eps>/<split>.h5`)::

    adv         float32 N x 3 x 32 x 32 in [0, 1] (Foolbox's clipped output; rounded to the 8-bit grid
                inside the eps ball only for an attack with `quantize: 8bit`, attribute `quantize`)
    index       int64 N   position of each image in the split of the dataset file
    label       int64 N   true class
    pred_clean  int64 N   classifier prediction on the clean image   } the classifier's evaluation copy
    pred_adv    int64 N   classifier prediction on `adv`             } (`inference.predict` at the same batch size)
    success     bool  N   pred_adv != label
    sub_attack  int8  N   AutoAttack only: position in attrs `sub_attacks` of the sub-attack that fooled the
                          classifier (-1: none did)
    linf, l2    float32 N norms of adv - clean
    attrs: attack, foolbox_class, params (JSON), epsilon, norm, seed, versions (JSON),
           quantize (float | 8bit), sub_attacks (JSON), warnings (JSON: the attack's own warnings),
           classifier_sha256, dataset, split, seconds, images_per_s, format
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import time
import zlib
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd
import torch

from .autoattack import AutoAttackRunner, check_autoattack_params
from .classifier import load_classifier
from .data import Split, read_split, split_size
from .errors import ConfigError, PipelineFileError
from .h5io import atomic_h5, open_h5, provenance_attrs
from .inference import LogitRecorder, evaluation_model, to_float_pixels
from .progress import ProgressLog
from .runtime import resolve_device

log = logging.getLogger(__name__)
ATTACK_FORMAT = "advdefense-attack-v1"
ATTACK_DATASETS = ("adv", "index", "label", "pred_clean", "pred_adv", "success", "linf", "l2")
# AutoAttack: which sub-attack fooled the model (-1: none); restarts > 1: which run's adversarial is kept (0-based)
OPTIONAL_DATASETS = ("sub_attack", "restart")
NORM_P = {"linf": math.inf, "l2": 2.0}
AUTOATTACK = "AutoAttack"  # attacks.<name>.class of the AutoAttack kind (every other class is Foolbox's)


class AttackFileError(PipelineFileError):
    """An attack file is missing, incomplete or holds invalid images."""


def eps_tag(eps: float) -> str:
    """Canonical text of an epsilon used in file names: 0.02 -> '0.02', 8/255 -> '0.0313725'."""
    text = f"{float(eps):.7g}"
    if "e" in text:
        text = f"{float(eps):.10f}".rstrip("0").rstrip(".")
    return text


def foolbox_class(name: str, key: str):
    import foolbox

    cls = getattr(foolbox.attacks, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, foolbox.attacks.base.Attack)):
        known = sorted(n for n, c in vars(foolbox.attacks).items()
                       if inspect.isclass(c) and issubclass(c, foolbox.attacks.base.Attack) and not inspect.isabstract(c))
        raise ConfigError(f"{key}: {name!r} is neither {AUTOATTACK} nor a Foolbox attack class (known: "
                          f"{', '.join(known)})")
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
        raise ConfigError(f"{key}.quantize: 8bit rounding is kept inside an L-inf ball only; use it with norm linf")
    if spec.get("quantize", "float") == "8bit":
        small = [e for e in spec["epsilons"] if math.floor(e * 255.0 + 1e-6) < 1]
        if small:
            raise ConfigError(f"{key}.quantize: 8bit with epsilon {small[0]!r} (below 1/255 = 0.00392157) rounds every "
                              f"adversarial back to its clean image: the attack would change nothing and its "
                              f"'robust accuracy' would be the clean accuracy; use epsilons of at least 1/255 or "
                              f"quantize: float")


QUANTIZE = ("float", "8bit")


def quantize_8bit(adv: torch.Tensor, clean: torch.Tensor, eps: float) -> torch.Tensor:
    """`adv` rounded to the nearest 8-bit value k/255 that stays within `eps` (L-inf) of the clean image,
    which lies on that grid. What a real image file of the adversarial would hold."""
    q = torch.round(adv * 255.0)
    c = torch.round(clean * 255.0)
    reach = math.floor(eps * 255.0 + 1e-6)  # grid steps allowed each way
    return (torch.minimum(torch.maximum(q, c - reach), c + reach).clamp(0, 255) / 255.0).float()


def check_attack_method(key: str, spec: dict) -> None:
    """The method part of an attack entry (`class`, `params`, `norm`): what one attack job needs."""
    if spec["class"] == AUTOATTACK:
        check_autoattack_params(key, spec.get("params") or {}, spec["norm"])
        return
    cls = foolbox_class(spec["class"], f"{key}.class")
    params = spec.get("params") or {}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"{key}.params: {', '.join(unknown)} not accepted by foolbox.attacks.{spec['class']} "
                          f"(it takes {', '.join(accepted) or 'no parameters'})")
    signature = inspect.signature(cls.__init__).parameters
    for pname, value in params.items():
        default = signature[pname].default
        if not _same_kind(value, default):
            raise ConfigError(f"{key}.params.{pname}: {value!r} is not a valid value "
                              f"(foolbox.attacks.{spec['class']} expects a {type(default).__name__}, default {default!r})")
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
        raise ConfigError(f"{key}.norm: {norm!r} does not match foolbox.attacks.{spec['class']}, "
                          f"which bounds the L{'inf' if p == math.inf else p} norm")


# Ranges of Foolbox constructor parameters (by name, across its attacks): a value outside makes no attack
# (`steps: -5` runs zero steps and stores the clean images as "adversarials") or is rejected by Foolbox late.
POSITIVE_INT_PARAMS = {"steps", "candidates", "binary_search_steps", "directions", "population", "repeats",
                       "random_steps", "num_rotations", "num_translations", "lr_num_decay", "max_gradient_eval_steps",
                       "initial_gradient_eval_steps", "update_stats_every_k"}
POSITIVE_PARAMS = {"rel_stepsize", "abs_stepsize", "stepsize", "initial_stepsize", "max_stepsize", "min_stepsize",
                   "lr", "init_epsilon", "spherical_step", "source_step", "step_adaptation", "sampling_temperature",
                   "max_sigma", "adam_epsilon"}
NONNEGATIVE_PARAMS = {"overshoot", "confidence", "initial_const", "regularization", "momentum", "max_rotation",
                      "max_translation", "xi", "gamma", "mutation_range", "source_step_convergance"}
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
            raise ConfigError(f"{key}: {e!r} {what} the epsilon before it ({epsilons[i - 1]!r}); a sweep lists each "
                              f"epsilon once, increasing")
        tag = eps_tag(e)
        if float(tag) == 0.0:
            raise ConfigError(f"{key}: {e!r} is too small to name a file (it would be tagged {tag!r}); use 1e-10 or more")
        if tag in tags:
            raise ConfigError(f"{key}: {tags[tag]!r} and {e!r} are the same epsilon to 7 significant digits (both "
                              f"name the file eps{tag}); remove one")
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


def build_attack(spec: dict):
    return foolbox_class(spec["class"], "attacks.<name>.class")(**(spec.get("params") or {}))


def attacked_images(dataset_path, split: str, images: int | None, seed: int) -> tuple[Split, np.ndarray]:
    """The images of `split` that every attack uses (`attack_defaults.images.<split>` of them, seeded) and
    their positions in the split: (their rows of the split, aligned with the positions). Attacks, clean
    latents and clean purification all take their images from here, so they line up. Only those images
    are read from the dataset file."""
    index = attack_indices(split_size(dataset_path, split), images, seed, f"attack_defaults.images.{split}")
    return read_split(dataset_path, split, index), index


def attack_indices(split_size: int, n: int | None, seed: int, key: str) -> np.ndarray:
    """The images of a split that every attack uses: a seeded random subset, sorted.

    The same seed gives the same images for every attack and epsilon, so clean and
    attacked sets line up across methods (the detector stage relies on it)."""
    if n is None or n == split_size:
        return np.arange(split_size, dtype=np.int64)
    if n > split_size:
        raise ConfigError(f"{key}: asked for {n} images but the split has only {split_size}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(split_size, size=n, replace=False)).astype(np.int64)


def job_seed(seed: int, attack: str, eps: float, split: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{attack}/{eps!r}/{split}".encode())) % (2**31)


def batch_seed(seed: int, first: int) -> int:
    """The seed of the batch whose first image is image `first` of the job: a batch's random draws (PGD's random
    start, AutoAttack's restarts) depend on nothing else, so shards of a job reproduce it batch for batch."""
    return (seed * 1_000_033 + first * 7_919) % (2**31)


class FoolboxMethod:
    """A Foolbox attack as a callable `(x, y, seed) -> (clipped adversarials, None)`."""

    sub_attacks: list[str] = []

    def __init__(self, spec: dict, net: torch.nn.Module, eps: float, device):
        import foolbox

        self.attack = build_attack(spec)
        self.fmodel = foolbox.PyTorchModel(net, bounds=(0.0, 1.0), device=device)
        self.eps = eps

    def __call__(self, x, y, seed: int):
        torch.manual_seed(seed)
        _, clipped, _ = self.attack(self.fmodel, x, y, epsilons=self.eps)
        return clipped, None

    def finish(self) -> list[str]:
        return []


class Restarts:
    """An attack run up to `restarts` times on a batch, each run with its own seed (a fresh random start) on
    the images that no earlier run fooled; per image the first run that fooled the model is kept.
    `runs`: after each batch, per image the run (0-based) whose adversarial is kept."""

    def __init__(self, method, restarts: int, model: torch.nn.Module):
        self.method, self.restarts, self.model = method, restarts, model
        self.sub_attacks = method.sub_attacks
        self.runs: torch.Tensor | None = None

    def __call__(self, x, y, seed: int):
        adv, sub = self.method(x, y, seed)
        self.runs = torch.zeros(len(x), dtype=torch.int8, device=y.device)
        for r in range(1, self.restarts):
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


def attack_method(spec: dict, net: LogitRecorder, eps: float, device):
    """The callable that attacks one batch for an attack entry: AutoAttack (runs the bare evaluation network:
    its hundreds of passes need no recording) or a Foolbox class (runs `net`, whose recorded passes
    give the stored predictions); with `restarts` > 1, run again on the images still classified correctly."""
    if spec["class"] == AUTOATTACK:
        method = AutoAttackRunner(net.model, spec["norm"], eps, spec.get("params") or {}, device)
    else:
        method = FoolboxMethod(spec, net, eps, device)
    restarts = spec.get("restarts", 1)
    return Restarts(method, restarts, net.model) if restarts > 1 else method


def run_attack(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, index: np.ndarray,
               name: str, spec: dict, eps: float, out_path: str | Path, *, batch_size: int, seed: int,
               device: torch.device, attrs: dict, first: int = 0) -> dict:
    """Attack `images` (uint8 N x 3 x 32 x 32, with their `labels`; `index`: their positions in the split, which
    the file records) batch by batch and stream the results into `out_path`. `first` is the position of
    `images[0]` among the images of the whole job (a shard of it starts there): it fixes the batches' seeds."""
    check_attack_method(f"attacks.{name}", spec)
    # the attack and the stored predictions run the evaluation copy (batch norm folded, channels-last,
    # parameters frozen): the same network every other stage evaluates (`inference.predict`)
    net = LogitRecorder(evaluation_model(model, device)).eval()
    method = attack_method(spec, net, float(eps), device)
    n = len(index)
    if n == 0:
        raise ConfigError(f"attacks.{name}: no images to attack")
    if len(images) != n or len(labels) != n:
        raise ValueError(f"run_attack: {len(images)} images and {len(labels)} labels for {n} positions")
    t0 = time.perf_counter()
    reused = 0
    progress = ProgressLog(log, f"{name} eps={eps:g}", n)
    with atomic_h5(out_path) as f:
        # float32 adversarials barely compress (about 20 % with gzip) and compressing costs more than
        # the attack itself on a GPU: chunked, uncompressed
        ds = {
            "adv": f.create_dataset("adv", (n, 3, 32, 32), np.float32, chunks=(min(n, 128), 3, 32, 32)),
            "index": f.create_dataset("index", data=index),
            "label": f.create_dataset("label", data=np.asarray(labels, dtype=np.int64)),
            "pred_clean": f.create_dataset("pred_clean", (n,), np.int64),
            "pred_adv": f.create_dataset("pred_adv", (n,), np.int64),
            "success": f.create_dataset("success", (n,), bool),
            "linf": f.create_dataset("linf", (n,), np.float32),
            "l2": f.create_dataset("l2", (n,), np.float32),
        }
        if method.sub_attacks:
            ds["sub_attack"] = f.create_dataset("sub_attack", (n,), np.int8)
        if isinstance(method, Restarts):  # which run's adversarial is stored, per image
            ds["restart"] = f.create_dataset("restart", (n,), np.int8)
        done = 0
        for start in range(0, n, batch_size):
            idx = index[start : start + batch_size]
            x = to_float_pixels(torch.from_numpy(images[start : start + batch_size]).to(device))
            y = torch.from_numpy(np.asarray(labels[start : start + batch_size], dtype=np.int64)).to(device)
            net.reset()
            clipped, sub = method(x, y, batch_seed(seed, first + start))
            adv = clipped.detach().float().clamp(0.0, 1.0)
            if spec.get("quantize", "float") == "8bit":  # success is judged again on the rounded images
                adv = quantize_8bit(adv, x, float(eps))
            # predictions from the attack's own forward passes where they saw exactly these inputs
            pred_clean, pred_adv = net.recorded_predictions(x), net.recorded_predictions(adv)
            reused += (pred_clean is not None) + (pred_adv is not None)
            with torch.inference_mode():  # through the recorder too: its finiteness check sees these passes
                if pred_clean is None:
                    pred_clean = net(x).argmax(1)
                if pred_adv is None:
                    pred_adv = net(adv).argmax(1)
            net.check_finite(f"{name} eps={eps:g}, images {first + start}..{first + start + len(idx) - 1}")
            net.reset()
            delta = (adv - x).flatten(1)
            sl = slice(start, start + len(idx))
            ds["adv"][sl] = adv.cpu().numpy()
            ds["pred_clean"][sl] = pred_clean.cpu().numpy()
            ds["pred_adv"][sl] = pred_adv.cpu().numpy()
            ds["success"][sl] = (pred_adv != y).cpu().numpy()
            ds["linf"][sl] = delta.abs().amax(1).cpu().numpy()
            ds["l2"][sl] = delta.norm(dim=1).cpu().numpy()
            if sub is not None:
                # a sub-attack counts only where the stored (possibly 8-bit rounded) image still fools the model
                ds["sub_attack"][sl] = torch.where(pred_adv != y, sub, -1).cpu().numpy()
            if "restart" in ds:
                ds["restart"][sl] = method.runs.cpu().numpy()
            done += len(idx)
            del x, y, clipped, adv, pred_clean, pred_adv, delta  # free this batch before the next one runs
            progress.update(done)
        batches = -(-n // batch_size)
        log.info("%s eps=%g: %d of %d stored predictions taken from the attack's own forward passes",
                 name, eps, reused, 2 * batches)
        warned = method.finish()
        for w in warned:
            log.warning("%s eps=%g: %s", name, eps, w)
        seconds = time.perf_counter() - t0
        f.attrs.update({
            "format": ATTACK_FORMAT,
            "attack": name,
            "foolbox_class": spec["class"],
            "params": json.dumps(spec.get("params") or {}, sort_keys=True),
            "epsilon": float(eps),
            "norm": spec["norm"],
            "quantize": spec.get("quantize", "float"),
            "restarts": int(spec.get("restarts", 1)),
            "seed": int(seed),
            "batch_size": int(batch_size),
            "sub_attacks": json.dumps(method.sub_attacks),
            "warnings": json.dumps(warned),
            **provenance_attrs(),
            "seconds": seconds,
            "images_per_s": n / seconds,
            **attrs,
        })
        summary = summarize_attack_file(f)
    log.info("%s eps=%g: success %.2f%% over %d images in %.1f s", name, eps, 100 * summary["success_rate"], n, seconds)
    return summary


def check_adversarials(adv: np.ndarray, path, first: int = 0) -> None:
    """Shape, finiteness and the [0, 1] range of a block of stored adversarials; `first` is the position
    of `adv[0]` in the file. The error names the file and the first bad image."""
    if adv.ndim != 4 or adv.shape[1:] != (3, 32, 32):
        raise AttackFileError(f"{path}: 'adv' must be N x 3 x 32 x 32, found {adv.shape}")
    flat = adv.reshape(len(adv), -1)
    finite = np.isfinite(flat).all(1)
    with np.errstate(invalid="ignore"):
        in_range = finite & (flat.min(1, initial=0.0) >= 0.0) & (flat.max(1, initial=1.0) <= 1.0)
    if not in_range.all():
        i = int(np.flatnonzero(~in_range)[0])
        img = adv[i]
        what = "non-finite values (NaN or inf)" if not finite[i] else \
            f"values outside [0, 1] (min {img.min():.6g}, max {img.max():.6g})"
        raise AttackFileError(f"{path}: adversarial image {first + i} (of 'adv') holds {what}; "
                              f"{int((~in_range).sum())} bad image(s) in images {first}..{first + len(adv) - 1}")


@contextlib.contextmanager
def open_attack_file(path, require: tuple[str, ...] = ATTACK_DATASETS) -> Iterator[h5py.File]:
    """Open an attack file for reading: it must exist, be readable HDF5, carry this pipeline's attack
    format and the datasets `require`, all of one length. Errors name the file."""
    if not Path(path).is_file():
        raise AttackFileError(f"attack file {path} does not exist")
    with open_h5(path, "attack") as f:
        if f.attrs.get("format") != ATTACK_FORMAT:
            raise AttackFileError(f"{path}: not an attack file of this pipeline (format {f.attrs.get('format')!r})")
        missing = [k for k in require if k not in f]
        if missing:
            raise AttackFileError(f"{path}: missing dataset(s) {', '.join(missing)}")
        lengths = {k: len(f[k]) for k in require}
        if len(set(lengths.values())) > 1:
            raise AttackFileError(f"{path}: datasets differ in length ({lengths})")
        yield f


def read_attack_file(path: str | Path, require: tuple[str, ...] = ATTACK_DATASETS) -> dict:
    """Load an attack file into arrays (+ 'attrs'); `adv`, when required, is checked image by image
    (finite, in [0, 1]) as every stage needs it. The one reader of attack files."""
    with open_attack_file(path, require) as f:
        out = {k: f[k][()] for k in require}
        out["attrs"] = dict(f.attrs)
    if "adv" in out:
        check_adversarials(out["adv"], path)
    return out


def iter_adversarial_batches(path: str | Path, batch_size: int) -> Iterator[np.ndarray]:
    """The stored adversarials of an attack file in batches of `batch_size` (float32 N x 3 x 32 x 32),
    each checked like `read_attack_file` checks them: for stages that stream instead of loading all."""
    with open_attack_file(path, ("adv",)) as f:
        adv = f["adv"]
        for start in range(0, len(adv), batch_size):
            block = adv[start : start + batch_size]
            check_adversarials(block, path, start)
            yield block


SUMMARY_DATASETS = ("label", "pred_clean", "pred_adv", "success", "linf", "l2")


def summarize_attack_file(f: h5py.File) -> dict:
    label, pred_clean, pred_adv = f["label"][()], f["pred_clean"][()], f["pred_adv"][()]
    success, linf, l2 = f["success"][()], f["linf"][()], f["l2"][()]
    correct = pred_clean == label
    n = len(label)
    return {
        "attack": f.attrs["attack"],
        "epsilon": float(f.attrs["epsilon"]),
        "split": f.attrs.get("split", ""),
        "norm": f.attrs["norm"],
        "foolbox_class": f.attrs["foolbox_class"],
        "quantize": f.attrs.get("quantize", "float"),
        "n": n,
        "unchanged": int((linf == 0).sum()),
        "clean_accuracy": float(correct.mean()) if n else float("nan"),
        "robust_accuracy": float((pred_adv == label).mean()) if n else float("nan"),
        "success_rate": float(success.mean()) if n else float("nan"),
        "success_rate_on_correct": float(success[correct].mean()) if correct.any() else float("nan"),
        "mean_linf": float(linf.mean()) if n else float("nan"),
        "max_linf": float(linf.max()) if n else float("nan"),
        "mean_l2": float(l2.mean()) if n else float("nan"),
        "max_l2": float(l2.max()) if n else float("nan"),
        **fooled_by(f),
        "warnings": " | ".join(json.loads(f.attrs.get("warnings", "[]"))),
        "seconds": float(f.attrs.get("seconds", float("nan"))),
        "images_per_s": float(f.attrs.get("images_per_s", float("nan"))),
    }


def fooled_by(f: h5py.File) -> dict[str, int]:
    """{fooled_by_<sub-attack>: how many images it fooled first} of an AutoAttack file, e.g. fooled_by_apgd-ce
    812, fooled_by_apgd-t 9 (numbers, so that they gather over seeds); {} for other attacks."""
    subs = json.loads(f.attrs.get("sub_attacks", "[]"))
    if not subs or "sub_attack" not in f:
        return {}
    counts = np.bincount(f["sub_attack"][()].astype(np.int64) + 1, minlength=len(subs) + 1)[1:]
    return {f"fooled_by_{s}": int(c) for s, c in zip(subs, counts)}


def summarize_attack_files(paths):
    rows = []
    for path in paths:
        with open_attack_file(path, SUMMARY_DATASETS) as f:
            rows.append(summarize_attack_file(f))
    # one fooled_by_<sub-attack> column per AutoAttack sub-attack of any file (empty for the other attacks)
    subs = list(dict.fromkeys(k for row in rows for k in row if k.startswith("fooled_by_")))
    columns = ["attack", "epsilon", "split", "norm", "foolbox_class", "quantize", "n", "unchanged", "clean_accuracy", "robust_accuracy",
               "success_rate", "success_rate_on_correct", "mean_linf", "max_linf", "mean_l2", "max_l2",
               *subs, "warnings", "seconds", "images_per_s"]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["attack", "epsilon", "split"]).reset_index(drop=True)


def shard_range(n: int, batch_size: int, shard: int, shards: int, what: str) -> tuple[int, int]:
    """Images [lo, hi) of shard `shard` (0-based) of `shards` over a job of `n` images: shards take whole
    batches of `batch_size` (the batches of the unsharded job, so every batch sees the same images and seed)."""
    batches = -(-n // batch_size)
    if not 1 <= shards <= batches:
        raise ConfigError(f"attack_defaults.shards: {shards} shards, but {what} has {n} image(s), {batches} batch(es) "
                          f"of attack_defaults.batch_size {batch_size}; each shard takes whole batches, so use at "
                          f"most {batches} shards (or a smaller batch size)")
    if not 0 <= shard < shards:
        raise ConfigError(f"attack shard {shard + 1} of {shards} does not exist")
    lo, hi = shard * batches // shards, (shard + 1) * batches // shards
    return lo * batch_size, min(hi * batch_size, n)


def attack_split(model: torch.nn.Module, dataset_path, split: str, name: str, spec: dict, eps: float, out_path, *,
                 images: int | None, seed: int, device: str = "auto", batch_size: int = 500,
                 limit: int | None = None, attrs: dict | None = None,
                 shard: tuple[int, int] | None = None) -> dict:
    """Attack the attacked subset of `split` (`images` of them, seeded by `seed`) with attack `name`
    (`spec`: class, norm, params) at `eps`; `model` is any differentiable classifier on [0, 1].
    `limit` keeps only the first that many of the subset (the adaptive attack); more than the
    subset is an error. `shard` = (k, N): only the k-th (0-based) of N shards (`merge_attack_shards` joins them)."""
    device = resolve_device(device)
    data, index = attacked_images(dataset_path, split, images, seed)
    if limit is not None:
        if limit > len(index):
            raise ConfigError(f"purification.adaptive.images: {limit} images asked for, but only {len(index)} are "
                              f"attacked (attack_defaults.images.{split})")
        index, data = index[:limit], data.take(slice(0, limit))
    attrs = {"dataset": str(dataset_path), "split": split, "device": str(device), **(attrs or {})}
    first = 0
    if shard is not None:
        k, shards = shard
        first, end = shard_range(len(index), batch_size, k, shards, f"split {split!r} of {name} at eps {eps:g}")
        attrs.update({"shard": k, "shards": shards, "shard_first": first, "shard_of_images": len(index)})
        index, data = index[first:end], data.take(slice(first, end))
    return run_attack(model, data.images, data.labels, index, name, spec, float(eps), out_path,
                      batch_size=batch_size, seed=job_seed(seed, name, float(eps), split), device=device,
                      attrs=attrs, first=first)


SHARD_ATTRS = ("shard", "shards", "shard_first", "shard_of_images")
# attributes of an attack file that describe one run of the job rather than the job: where and how fast it ran,
# which shard it is, the attack's own warnings (gathered over the shards)
RUN_ATTRS = frozenset({"seconds", "images_per_s", "warnings", "device", "shard", "shard_first"})


def _job_attrs_differ(a: dict, b: dict) -> list[str]:
    """The attributes that define an attack job (attack, class, norm, params, epsilon, quantize, restarts, seed,
    batch size, split, dataset, the classifier's sha256, versions ...: all but RUN_ATTRS) on which two files differ,
    as 'key (a vs b)'."""
    keys = sorted((set(a) | set(b)) - RUN_ATTRS)
    return [f"{k} ({a.get(k, '<absent>')!r} vs {b.get(k, '<absent>')!r})" for k in keys
            if not _same_value(a.get(k), b.get(k))]


def _same_value(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.array_equal(np.asarray(x), np.asarray(y))
    return x == y


def merge_attack_shards(paths: list, out_path, block: int = 1024) -> dict:
    """The attack file of a whole job from its shards (in order): their datasets joined, their attributes those of
    the first shard but the seconds summed. Equal, dataset for dataset, to the file of the unsharded job. Copied
    `block` images at a time: memory stays flat in the number of images."""
    if not paths:
        raise AttackFileError(f"{out_path}: no shards to merge")
    attrs, lengths, keys, expected_first, warned = None, [], None, 0, []
    for k, path in enumerate(paths):
        with open_attack_file(path) as f:
            a = dict(f.attrs)
            if a.get("shard") != k or a.get("shards") != len(paths):
                raise AttackFileError(f"{path}: holds shard {a.get('shard', '?')} of {a.get('shards', '?')}, "
                                      f"expected shard {k} of {len(paths)}")
            if a["shard_first"] != expected_first:
                raise AttackFileError(f"{path}: starts at image {a['shard_first']}, expected {expected_first} (shards "
                                      f"of different batch sizes cannot be joined; re-run them)")
            here = [x for x in ATTACK_DATASETS + OPTIONAL_DATASETS if x in f]
            warned += [w for w in json.loads(a.get("warnings", "[]")) if w not in warned]
            if attrs is None:
                attrs, keys = a, here
            else:
                differ = _job_attrs_differ(attrs, a)
                if differ or here != keys:
                    what = "; ".join(differ) if differ else f"datasets {here} vs {keys}"
                    raise AttackFileError(f"{path}: made by another job than {paths[0]} ({what}); every shard of a "
                                          f"job must come from the same attack, settings, classifier and data: "
                                          f"delete the shards and run them again")
                attrs["seconds"] += a["seconds"]
            lengths.append(len(f["index"]))
            expected_first += lengths[-1]
    n = expected_first
    if n != attrs["shard_of_images"]:
        raise AttackFileError(f"{out_path}: the shards hold {n} images, the job has {attrs['shard_of_images']}")
    with atomic_h5(out_path) as out:
        with h5py.File(paths[0], "r") as f:
            ds = {key: out.create_dataset(key, (n, *f[key].shape[1:]), f[key].dtype,
                                          chunks=(min(n, 128), 3, 32, 32) if key == "adv" else None) for key in keys}
        start = 0
        for path, length in zip(paths, lengths):
            with h5py.File(path, "r") as f:
                for lo in range(0, length, block):
                    hi = min(lo + block, length)
                    for key in keys:
                        ds[key][start + lo : start + hi] = f[key][lo:hi]
            start += length
        out.attrs.update({k: v for k, v in attrs.items() if k not in SHARD_ATTRS})
        out.attrs.update({"images_per_s": n / attrs["seconds"], "merged_shards": len(paths),
                          "warnings": json.dumps(warned)})
        summary = summarize_attack_file(out)
    log.info("%s: %d shards merged (%d images)", out_path, len(paths), n)
    return summary


def generate_attack_file(dataset_path: str | Path, classifier_path: str | Path, name: str, spec: dict, eps: float,
                         split: str, out_path: str | Path, *, images: int | None, seed: int, device: str = "auto",
                         batch_size: int = 500, shard: tuple[int, int] | None = None) -> dict:
    """Stage entry point: attack `split` of the dataset file with attack `name` (`spec`) at `eps` (one shard of
    the job only, with `shard`)."""
    model = load_classifier(classifier_path, resolve_device(device))
    return attack_split(model, dataset_path, split, name, spec, eps, out_path, images=images, seed=seed, device=device,
                        batch_size=batch_size, attrs=provenance_attrs(classifier=classifier_path), shard=shard)
