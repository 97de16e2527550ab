"""Attack stage: adversarial examples of one attack at one epsilon on one split (or a shard of it), batch by
batch, into one HDF5 file.

The batch runner (`run_attack`) calls an `attack_methods.AttackMethod` (Foolbox, AutoAttack, restarts) on each
batch, rounds to 8 bits where the attack says so, and records what every table needs; the file's layout, its
readers and the merging of shards are in `attack_files`. Which images are attacked is the data's
(`data.attacked_images`); the seed of every batch is the job record's (`plan.jobs.AttackJob.batch_seed`), so that
shards line up.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from .attack_files import NORM_TOLERANCE, AttackFileWriter
from .attack_methods import build_method, quantize_8bit
from .classifier import load_classifier
from .data import attacked_images
from .errors import ConfigError
from .h5io import atomic_h5, provenance_attrs
from .inference import LogitRecorder, evaluation_model, to_float_pixels
from .plan.attack_specs import check_attack_method
from .plan.jobs import AttackJob
from .progress import ProgressLog
from .runtime import resolve_device

log = logging.getLogger(__name__)


def run_attack(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    job: AttackJob,
    out_path: str | Path,
    *,
    device: torch.device,
    attrs: dict | None = None,
    first: int = 0,
) -> dict:
    """Attack `images` (uint8 N x 3 x 32 x 32, with their `labels`; `index`: their positions in the split, which
    the file records) with `job`'s attack, batch by batch, streaming the results into `out_path`. `first` is the
    position of `images[0]` among the images of the whole job (a shard of it starts there): it fixes the
    batches' seeds."""
    name, spec, eps, batch_size = job.name, job.spec, float(job.eps), job.batch_size
    check_attack_method(f"attacks.{name}", spec)
    # the attack and the stored predictions run the evaluation copy (batch norm folded, channels-last,
    # parameters frozen): the same network every other stage evaluates (`inference.predict`)
    net = LogitRecorder(evaluation_model(model, device)).eval()
    method = build_method(spec, net, eps, device)
    n = len(index)
    if n == 0:
        raise ConfigError(f"attacks.{name}: no images to attack")
    if len(images) != n or len(labels) != n:
        raise ValueError(f"run_attack: {len(images)} images and {len(labels)} labels for {n} positions")
    t0 = time.perf_counter()
    reused = 0
    progress = ProgressLog(log, f"{name} eps={eps:g}", n)
    with atomic_h5(out_path) as f:
        # `method.runs`: which run's adversarial is stored, per image, where the attack restarts
        restarts = spec.get("restarts", 1) > 1
        writer = AttackFileWriter(f, index, labels, sub_attacks=bool(method.sub_attacks), restarts=restarts)
        done = 0
        for start in range(0, n, batch_size):
            idx = index[start : start + batch_size]
            x = to_float_pixels(torch.from_numpy(images[start : start + batch_size]).to(device))
            y = torch.from_numpy(np.asarray(labels[start : start + batch_size], dtype=np.int64)).to(device)
            net.reset()
            clipped, sub = method(x, y, job.batch_seed(first + start))
            adv = clipped.detach().float().clamp(0.0, 1.0)
            check_within_budget(adv, x, spec["norm"], eps, f"{name} ({spec['class']})", first + start)
            if spec.get("quantize", "float") == "8bit":  # success is judged again on the rounded images
                adv = quantize_8bit(adv, x, eps)
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
            batch = {
                "adv": adv.cpu().numpy(),
                "pred_clean": pred_clean.cpu().numpy(),
                "pred_adv": pred_adv.cpu().numpy(),
                "success": (pred_adv != y).cpu().numpy(),
                "linf": delta.abs().amax(1).cpu().numpy(),
                "l2": delta.norm(dim=1).cpu().numpy(),
            }
            if sub is not None:
                # a sub-attack counts only where the stored (possibly 8-bit rounded) image still fools the model
                batch["sub_attack"] = torch.where(pred_adv != y, sub, -1).cpu().numpy()
            if restarts:
                batch["restart"] = method.runs.cpu().numpy()
            writer.write(start, **batch)
            done += len(idx)
            del (
                x,
                y,
                clipped,
                adv,
                pred_clean,
                pred_adv,
                delta,
                batch,
            )  # free this batch before the next one runs
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
        summary = writer.finish(
            {
                "attack": name,
                "foolbox_class": spec["class"],
                "params": json.dumps(spec.get("params") or {}, sort_keys=True),
                "epsilon": eps,
                "norm": spec["norm"],
                "quantize": spec.get("quantize", "float"),
                "restarts": int(spec.get("restarts", 1)),
                "seed": int(job.job_seed),
                "batch_size": int(batch_size),
                "sub_attacks": json.dumps(method.sub_attacks),
                "warnings": json.dumps(warned),
                **provenance_attrs(),
                "seconds": seconds,
                "images_per_s": n / seconds,
                **(attrs or {}),
            }
        )
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
    job: AttackJob,
    out_path,
    *,
    device: str = "auto",
    attrs: dict | None = None,
) -> dict:
    """Attack the attacked images of `job.split` (`job.images` of them, chosen with `job.seed`) with `job`'s attack;
    `model` is any differentiable classifier on [0, 1]. `job.limit` keeps only the first that many of them (the
    adaptive attack; more than there are is an error); `job.shard` only one shard of them."""
    device = resolve_device(device)
    data, index = attacked_images(dataset_path, job.split, job.images, job.seed)
    if job.limit is not None:
        if job.limit > len(index):
            raise ConfigError(
                f"purification.adaptive.images: {job.limit} images asked for, but only {len(index)} are "
                f"attacked (attack_defaults.images.{job.split})"
            )
        index, data = index[: job.limit], data.take(slice(0, job.limit))
    attrs = {"dataset": str(dataset_path), "split": job.split, "device": str(device), **(attrs or {})}
    first, end = job.shard_bounds(len(index))
    if job.shard is not None:
        k, shards = job.shard
        attrs.update({"shard": k, "shards": shards, "shard_first": first, "shard_of_images": len(index)})
        index, data = index[first:end], data.take(slice(first, end))
    return run_attack(
        model, data.images, data.labels, index, job, out_path, device=device, attrs=attrs, first=first
    )


def generate_attack_file(
    dataset_path: str | Path, classifier_path: str | Path, job: AttackJob, out_path, *, device="auto"
):
    """Stage entry point: attack the dataset file's `job.split` as `job` says (one shard of it, with `job.shard`)."""
    model = load_classifier(classifier_path, resolve_device(device))
    return attack_split(
        model, dataset_path, job, out_path, device=device, attrs=provenance_attrs(classifier=classifier_path)
    )
