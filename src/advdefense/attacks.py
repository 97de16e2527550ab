"""Attack stage: adversarial examples of one attack at one epsilon on one split (or a shard of it), batch by
batch, into one HDF5 file.

The batch runner (`run_attack`) calls an `attack_methods.AttackMethod` (Foolbox, AutoAttack, restarts) on each
batch, rounds to 8 bits where the attack says so, and records what every table needs; the file's layout, its
readers and the merging of shards are in `attack_files`. Which images are attacked is the data's
(`data.attacked_images`); the seed of every batch (`batch_seed`) is decided here, so that shards line up.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .attack_files import ATTACK_FORMAT, NORM_TOLERANCE, summarize_attack_file
from .attack_methods import build_method, quantize_8bit
from .classifier import load_classifier
from .data import attacked_images
from .errors import ConfigError
from .h5io import atomic_h5, provenance_attrs
from .inference import LogitRecorder, evaluation_model, to_float_pixels
from .plan.attack_specs import check_attack_method, shard_range
from .plan.seeds import keyed_seed
from .progress import ProgressLog
from .runtime import resolve_device

log = logging.getLogger(__name__)


def job_seed(seed: int, attack: str, eps: float, split: str) -> int:
    return keyed_seed(seed, f"{attack}/{eps!r}/{split}")


def batch_seed(seed: int, first: int) -> int:
    """The seed of the batch whose first image is image `first` of the job: a batch's random draws (PGD's random
    start, AutoAttack's restarts) depend on nothing else, so shards of a job reproduce it batch for batch."""
    return (seed * 1_000_033 + first * 7_919) % (2**31)


def run_attack(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    name: str,
    spec: dict,
    eps: float,
    out_path: str | Path,
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    attrs: dict,
    first: int = 0,
) -> dict:
    """Attack `images` (uint8 N x 3 x 32 x 32, with their `labels`; `index`: their positions in the split, which
    the file records) batch by batch and stream the results into `out_path`. `first` is the position of
    `images[0]` among the images of the whole job (a shard of it starts there): it fixes the batches' seeds."""
    check_attack_method(f"attacks.{name}", spec)
    # the attack and the stored predictions run the evaluation copy (batch norm folded, channels-last,
    # parameters frozen): the same network every other stage evaluates (`inference.predict`)
    net = LogitRecorder(evaluation_model(model, device)).eval()
    method = build_method(spec, net, float(eps), device)
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
        if spec.get("restarts", 1) > 1:  # which run's adversarial is stored, per image (`method.runs`)
            ds["restart"] = f.create_dataset("restart", (n,), np.int8)
        done = 0
        for start in range(0, n, batch_size):
            idx = index[start : start + batch_size]
            x = to_float_pixels(torch.from_numpy(images[start : start + batch_size]).to(device))
            y = torch.from_numpy(np.asarray(labels[start : start + batch_size], dtype=np.int64)).to(device)
            net.reset()
            clipped, sub = method(x, y, batch_seed(seed, first + start))
            adv = clipped.detach().float().clamp(0.0, 1.0)
            check_within_budget(adv, x, spec["norm"], float(eps), f"{name} ({spec['class']})", first + start)
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
        log.info(
            "%s eps=%g: %d of %d stored predictions taken from the attack's own forward passes",
            name,
            eps,
            reused,
            2 * batches,
        )
        warned = method.finish()
        for w in warned:
            log.warning("%s eps=%g: %s", name, eps, w)
        seconds = time.perf_counter() - t0
        f.attrs.update(
            {
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
            }
        )
        summary = summarize_attack_file(f)
    log.info(
        "%s eps=%g: success %.2f%% over %d images in %.1f s",
        name,
        eps,
        100 * summary["success_rate"],
        n,
        seconds,
    )
    return summary


def check_within_budget(
    adv: torch.Tensor, x: torch.Tensor, norm: str, eps: float, what: str, start: int
) -> None:
    """Every adversarial of a batch lies within `eps` of its image in the attack's norm (float32 rounding
    allowed); an attack method that returns one outside (a plug-in family's bug) is refused, naming the image."""
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    over = size > eps * (1 + NORM_TOLERANCE) + NORM_TOLERANCE  # what the attack file's readers accept
    if over.any():
        i = int(torch.nonzero(over)[0])
        raise RuntimeError(
            f"{what} returned an adversarial {norm} {float(size[i]):.6g} from image {start + i}, beyond eps {eps:g}: "
            f"{int(over.sum())} of the batch's {len(x)} images are outside the threat model"
        )


def attack_split(
    model: torch.nn.Module,
    dataset_path,
    split: str,
    name: str,
    spec: dict,
    eps: float,
    out_path,
    *,
    images: int | None,
    seed: int,
    device: str = "auto",
    batch_size: int = 500,
    limit: int | None = None,
    attrs: dict | None = None,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Attack the attacked subset of `split` (`images` of them, seeded by `seed`) with attack `name`
    (`spec`: class, norm, params) at `eps`; `model` is any differentiable classifier on [0, 1].
    `limit` keeps only the first that many of the subset (the adaptive attack); more than the
    subset is an error. `shard` = (k, N): only the k-th (0-based) of N shards (`merge_attack_shards` joins them)."""
    device = resolve_device(device)
    data, index = attacked_images(dataset_path, split, images, seed)
    if limit is not None:
        if limit > len(index):
            raise ConfigError(
                f"purification.adaptive.images: {limit} images asked for, but only {len(index)} are "
                f"attacked (attack_defaults.images.{split})"
            )
        index, data = index[:limit], data.take(slice(0, limit))
    attrs = {"dataset": str(dataset_path), "split": split, "device": str(device), **(attrs or {})}
    first = 0
    if shard is not None:
        k, shards = shard
        first, end = shard_range(
            len(index), batch_size, k, shards, f"split {split!r} of {name} at eps {eps:g}"
        )
        attrs.update({"shard": k, "shards": shards, "shard_first": first, "shard_of_images": len(index)})
        index, data = index[first:end], data.take(slice(first, end))
    return run_attack(
        model,
        data.images,
        data.labels,
        index,
        name,
        spec,
        float(eps),
        out_path,
        batch_size=batch_size,
        seed=job_seed(seed, name, float(eps), split),
        device=device,
        attrs=attrs,
        first=first,
    )


def generate_attack_file(
    dataset_path: str | Path,
    classifier_path: str | Path,
    name: str,
    spec: dict,
    eps: float,
    split: str,
    out_path: str | Path,
    *,
    images: int | None,
    seed: int,
    device: str = "auto",
    batch_size: int = 500,
    shard: tuple[int, int] | None = None,
) -> dict:
    """Stage entry point: attack `split` of the dataset file with attack `name` (`spec`) at `eps` (one shard of
    the job only, with `shard`)."""
    model = load_classifier(classifier_path, resolve_device(device))
    return attack_split(
        model,
        dataset_path,
        split,
        name,
        spec,
        eps,
        out_path,
        images=images,
        seed=seed,
        device=device,
        batch_size=batch_size,
        attrs=provenance_attrs(classifier=classifier_path),
        shard=shard,
    )
