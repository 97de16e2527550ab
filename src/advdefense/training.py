"""The one training loop of the pipeline, shared by every model (classifier, autoencoder, flow).

A model-specific *objective* turns a batch into a loss; the loop owns shuffling, batching,
the optimiser and schedule steps, non-finite-loss guards, per-epoch evaluation, the CSV
log and resumable state. All randomness of the loop and of the objective comes from one
CPU ``torch.Generator`` whose state is saved each epoch, so on CPU a run killed after any
epoch and resumed gives bit-identical final weights to an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .data import read_dataset_h5
from .h5io import atomic_path, write_json
from .models import save_checkpoint
from .models.archives import check_archive
from .plan.names import file_sha256, is_runtime_key
from .progress import ProgressLog
from .runtime import resolve_device

log = logging.getLogger(__name__)


CUDA_CHECK_EVERY = 25  # steps between read-backs of the losses on a GPU (non-finite check)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing was saved for the failing epoch."""


class Objective(Protocol):
    def __call__(
        self, batch: Sequence[torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return (mean loss to back-propagate, {metric: batch sum}) for one batch. Metric values may
        be tensors on the training device (the loop sums them there, without a host sync per step)."""


# ----------------------------------------------------------------------------- schedules
def lr_lambda(schedule: dict, epochs: int, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step multiplier of the base learning rate: optional linear warm-up, then
    cosine to zero, step decay at `milestones` (epochs) by `gamma`, or constant."""
    total = epochs * steps_per_epoch
    warmup = int(round(schedule.get("warmup_epochs", 0) * steps_per_epoch))
    name = schedule.get("name", "cosine")
    milestones = [m * steps_per_epoch for m in schedule.get("milestones", [])]
    gamma = schedule.get("gamma", 0.1)
    if name not in ("cosine", "multistep", "constant"):
        raise ValueError(f"schedule.name: unknown schedule {name!r} (use cosine, multistep or constant)")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if name == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if name == "multistep":
            return gamma ** sum(step >= m for m in milestones)
        return 1.0

    return factor


# ----------------------------------------------------------------------------- loop
def run_settings(section: str, settings: dict, seed: int, dataset_sha256: str | None = None) -> dict:
    """What a training run's result depends on: the settings of its config `section` (its runtime-only
    keys, `runtime.is_runtime_key`, left out), the seed and the training data file. A resume state
    records it and is used only by a run with the same."""
    return {
        "config": {k: v for k, v in settings.items() if not is_runtime_key(f"{section}.{k}")},
        "seed": seed,
        "dataset_sha256": dataset_sha256,
    }


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): obj}


def changed_settings(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two settings dicts (a key on one side only counts)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _settings_text(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


@dataclass
class TrainingRun:
    """Where a run keeps its resumable state and its per-epoch log, and the settings (`run_settings`)
    that a state must have been made with to be resumed."""

    state_path: Path
    log_path: Path
    settings: dict = field(default_factory=dict)
    history: list[dict] = field(
        default_factory=list
    )  # one row per epoch (`fit` fills it, resumed ones first)
    started: float = field(
        default_factory=time.perf_counter, compare=False
    )  # when this process began the run

    def load_state(self) -> dict | None:
        """The resume state, if there is one that was made with this run's settings. A state that
        cannot be read, or was made with other settings (a changed learning rate, depth, data ...), is
        deleted with a log line that says why and names the file: training then starts from epoch 1."""
        if not self.state_path.exists():
            return None
        try:
            check_archive(self.state_path, str(self.state_path))
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, corrupt, not a torch file, or declaring more than a model holds
            return self._discard(f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})")
        needed = ("epoch", "model", "optimizer", "generator", "history")
        if not isinstance(state, dict) or any(k not in state for k in needed):
            return self._discard("it is not a training state of this pipeline")
        if state.get("settings") != _settings_text(self.settings):
            old = json.loads(state["settings"]) if isinstance(state.get("settings"), str) else {}
            changed = changed_settings(old, json.loads(_settings_text(self.settings)))
            return self._discard(
                "it was made with other settings (changed: "
                + ", ".join(changed[:8])
                + (" ..." if len(changed) > 8 else "")
                + ")"
            )
        return state

    def _discard(self, why: str) -> None:
        log.warning(
            "discarding the resume state %s: %s; training starts again from epoch 1", self.state_path, why
        )
        self.state_path.unlink(missing_ok=True)
        return None


def _state_fits(model: nn.Module, weights: dict) -> str | None:
    """Why the saved `weights` cannot be loaded into `model` (None if they can), checked before any
    tensor is copied, so that a mismatch never leaves a half-loaded model."""
    own = model.state_dict()
    if set(own) != set(weights):
        missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
        return f"parameter names differ (missing {missing[:3]}, unexpected {extra[:3]})"
    for k, v in own.items():
        if tuple(weights[k].shape) != tuple(v.shape):
            return f"{k} has shape {tuple(weights[k].shape)} in the state, {tuple(v.shape)} in the model"
    return None


def _write_log(path: Path, history: list[dict]) -> None:
    if not history:
        return
    columns = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


@dataclass(frozen=True)
class FitSettings:
    """How `fit` trains: `epochs` passes over the training tensors in shuffled batches of `batch_size` (the last,
    smaller one dropped with `drop_last`), the learning rate of every step set by `schedule` (see `lr_lambda`;
    None: constant), the global gradient norm clipped to `max_grad_norm` (None: not clipped), losses checked
    for non-finite values every `check_every` steps (None: the device's default); `name` labels the log."""

    epochs: int
    batch_size: int
    schedule: dict | None = None
    name: str = "model"
    drop_last: bool = False
    max_grad_norm: float | None = None
    check_every: int | None = None

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def fit(
    model: nn.Module,
    objective: Objective,
    train_tensors: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    settings: FitSettings,
    generator: torch.Generator,
    run: TrainingRun,
    evaluate: Callable[[], dict[str, float]] | None = None,
) -> list[dict]:
    """Train `model` as `settings` say, resuming from `run.state_path` when it exists.

    `train_tensors` are indexed together along dim 0 (e.g. images and labels, already on the
    training device). Losses are checked for non-finite values every `settings.check_every` steps and at
    the end of each epoch (default: every step on the CPU, every CUDA_CHECK_EVERY steps on a GPU,
    where each check is a host sync); an epoch with one is never saved. Returns the history: one
    dict per epoch with mean training metrics, evaluation metrics, lr and seconds.
    """
    epochs, batch_size, schedule, name = (
        settings.epochs,
        settings.batch_size,
        settings.schedule,
        settings.name,
    )
    drop_last, max_grad_norm, check_every = settings.drop_last, settings.max_grad_norm, settings.check_every
    n = len(train_tensors[0])
    if any(len(t) != n for t in train_tensors):
        raise ValueError(
            "training tensors differ in length: " + ", ".join(str(len(t)) for t in train_tensors)
        )
    if n == 0:
        raise ValueError("the training set is empty")
    steps_per_epoch = len(
        range(0, n - (n % batch_size) if (drop_last and n >= batch_size) else n, batch_size)
    )
    scheduler = (
        None
        if schedule is None
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule, epochs, steps_per_epoch))
    )

    start_epoch = 1
    state = run.load_state()
    if state is not None and (why := _state_fits(model, state["model"])) is not None:
        state = run._discard(why)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        run.history = list(state["history"])
        start_epoch = state["epoch"] + 1
        log.info("%s: resuming from %s after epoch %d of %d", name, run.state_path, state["epoch"], epochs)
        if start_epoch > epochs:
            log.info("%s: state file already holds all %d epochs", name, epochs)
    else:
        run.history = []

    device = train_tensors[0].device
    progress = ProgressLog(log, f"{name} training", epochs, unit="epochs")
    for epoch in range(start_epoch, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device)
        sums: dict[str, torch.Tensor | float] = {}
        seen = 0
        stop = n - (n % batch_size) if (drop_last and n >= batch_size) else n
        starts = range(0, stop, batch_size)
        # on a GPU the losses stay on the device and are read back every CUDA_CHECK_EVERY steps (one
        # host sync instead of one per step); either way no epoch with a non-finite loss is saved
        losses = torch.empty(len(starts), device=device)
        every = check_every or (CUDA_CHECK_EVERY if device.type == "cuda" else 1)
        checked = 0  # losses[:checked] are known to be finite
        for step, start in enumerate(starts, 1):
            idx = order[start : start + batch_size]
            batch = [t[idx] for t in train_tensors]
            loss, metrics = objective(batch, generator)
            losses[step - 1] = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            seen += len(idx)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + (v.detach().double() if torch.is_tensor(v) else float(v))
            if step % every == 0 or step == len(starts):
                _check_finite(losses[checked:step], checked, name, epoch)
                checked = step
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": float(v) / seen for k, v in sums.items()})
        row["train_seconds"] = round(train_seconds, 3)
        row["train_images_per_s"] = round(seen / train_seconds, 1) if train_seconds > 0 else float("nan")
        if evaluate is not None:
            model.eval()
            row.update(evaluate())
        run.history.append(row)
        _save_state(run, model, optimizer, scheduler, generator, epoch)
        _write_log(run.log_path, run.history)
        log.info(
            "%s epoch %d/%d: %s",
            name,
            epoch,
            epochs,
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"
            ),
        )
        progress.update(epoch, start_done=start_epoch - 1)
    _write_log(run.log_path, run.history)
    model.eval()
    return run.history


def _check_finite(losses: torch.Tensor, first_step: int, name: str, epoch: int) -> None:
    """Raise TrainingDiverged at the first non-finite loss; `losses[0]` is step `first_step + 1`."""
    bad = ~torch.isfinite(losses)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise TrainingDiverged(
            f"{name}: loss is {losses[i].item()} at epoch {epoch}, step {first_step + i + 1}; "
            f"no checkpoint was written for this epoch (lower the learning rate or add warm-up)"
        )


def _save_state(run, model, optimizer, scheduler, generator, epoch) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "generator": generator.get_state(),
        "history": run.history,
        "settings": _settings_text(run.settings),
    }
    with atomic_path(run.state_path) as tmp:
        torch.save(state, tmp)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's and numpy's global generators; return the loop's own CPU generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainingData:
    """What every training stage starts from: device, the loop's generator and the dataset tensors
    (uint8; the training split already on the device)."""

    device: torch.device
    generator: torch.Generator
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple
    dataset_sha256: str


def prepare_training(dataset_path, device: str, seed: int) -> TrainingData:
    """Resolve the device, seed everything and load the data (training split on the device)."""
    device = resolve_device(device)
    generator = seed_everything(seed)
    ds = read_dataset_h5(dataset_path)
    return TrainingData(
        device,
        generator,
        torch.from_numpy(ds.train.images).to(device),
        torch.from_numpy(ds.train.labels).to(device),
        torch.from_numpy(ds.test.images),
        torch.from_numpy(ds.test.labels),
        ds.class_names,
        file_sha256(dataset_path),
    )


def finish_training(
    kind: str,
    model: nn.Module,
    run: TrainingRun,
    device: torch.device,
    train_images: int,
    model_path,
    metrics_path,
    metrics: dict,
    checkpoint_meta: dict,
) -> dict:
    """The common end of every training stage: add the run's statistics (its epochs: `run.history`) to the
    stage's `metrics`, write the checkpoint and the metrics JSON, then remove the resumable state (the run is
    complete)."""
    history = run.history
    train_seconds = sum(row["train_seconds"] for row in history)
    metrics = {
        **metrics,
        "epochs": len(history),
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.arch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "wall_seconds_this_run": round(time.perf_counter() - run.started, 2),
        "train_seconds_all_epochs": round(train_seconds, 2),
        "mean_epoch_seconds": round(train_seconds / len(history), 3),
        "train_images_per_s": round(train_images * len(history) / train_seconds, 1)
        if train_seconds > 0
        else None,
    }
    save_checkpoint(model_path, kind, model, checkpoint_meta)
    write_json(metrics_path, metrics)
    Path(run.state_path).unlink(missing_ok=True)
    return metrics
