"""Classifier stage: train a CIFAR ResNet on the dataset file and report its test accuracy."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .augment import RandomCropFlip
from .data import class_names, read_split
from .errors import ConfigError
from .h5io import write_json
from .inference import channels_last, predict, to_float_pixels
from .models import CifarResNet, load_checkpoint, save_checkpoint
from .models.external import (
    ExternalClassifier,
    check_classifier_model,
    load_user_model,
    stored_program,
)
from .plan.builder_spec import builder_source
from .plan.jobs import CheckpointSource
from .plan.names import check_sha256_pin, file_sha256
from .plan.training_specs import PGD_CURVE_IMAGES, STANDARD
from .robust_training import TrainingMethod, pgd_accuracy, training_method
from .runtime import resolve_device
from .training import FitSettings, TrainingRun, finish_training, fit, prepare_training, run_settings

log = logging.getLogger(__name__)


def classifier_arch(settings: dict, num_classes: int = 10) -> dict:
    """The checkpoint architecture of the `classifier` settings."""
    return {
        "name": "resnet",
        "depth": settings["depth"],
        "num_classes": num_classes,
        "width": settings["width"],
    }


class ClassificationObjective:
    """The classifier's training objective: a batch of uint8 images augmented, then the loss of the training
    method (`robust_training`: standard cross-entropy, or an adversarial training); reports loss and correct
    counts (on the images the method's cross-entropy sees: adversarial ones for PGD and fast AT). With
    `precision` bfloat16 the forward passes run under autocast (convolutions and the linear layer in bfloat16,
    the loss and the weights in float32): about 1.35x the float32 step on a CPU with AVX512-BF16 (Zen 4,
    Sapphire Rapids; benchmarks/README.md), and the tensor-core path on a GPU."""

    def __init__(self, method: TrainingMethod, augment: RandomCropFlip):
        self.method = method
        self.augment = augment

    def __call__(self, batch, generator):
        images, labels = batch
        x = self.augment(to_float_pixels(images), generator)
        loss, logits = self.method.loss(x, labels, generator)
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
        return loss, {"loss": loss.detach() * len(labels), "accuracy": correct}


def accuracy_report(pred: torch.Tensor, labels: torch.Tensor, class_names) -> dict:
    correct = pred == labels
    per_class = {}
    for k, name in enumerate(class_names):
        mask = labels == k
        per_class[name] = float(correct[mask].float().mean()) if mask.any() else float("nan")
    return {"accuracy": float(correct.float().mean()), "per_class_accuracy": per_class, "n": int(len(labels))}


def train_classifier(
    dataset_path: str | Path,
    settings: dict,
    seed: int,
    model_path: str | Path,
    metrics_path: str | Path,
    log_path: str | Path,
    state_path: str | Path,
    *,
    device: str = "auto",
    eval_batch_size: int = 1000,
) -> dict:
    """Train (or resume training) a ResNet with the `classifier` settings (depth, width, epochs, batch size,
    optimizer, schedule, augmentation); write checkpoint, metrics and log. `device` and
    `eval_batch_size` only decide where and in what chunks the work runs."""
    for key in ("epochs", "batch_size"):
        if not isinstance(settings[key], int) or settings[key] < 1:
            raise ConfigError(f"classifier.{key}: must be a positive integer, got {settings[key]!r}")
    if not settings["optimizer"]["lr"] > 0:
        raise ConfigError(f"classifier.optimizer.lr: must be positive, got {settings['optimizer']['lr']!r}")
    data = prepare_training(dataset_path, device, seed)
    device, generator = data.device, data.generator
    train_x, train_y, test_x, test_y = data.train_x, data.train_y, data.test_x, data.test_y
    num_classes = len(data.class_names)

    model = channels_last(CifarResNet(settings["depth"], num_classes, settings["width"]).to(device))
    sgd = settings["optimizer"]
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=sgd["lr"],
        momentum=sgd["momentum"],
        nesterov=sgd["nesterov"] and sgd["momentum"] > 0,
        weight_decay=sgd["weight_decay"],
    )
    augment = settings["augment"]
    method_name = settings.get("training", STANDARD)
    method = training_method(
        method_name, model, settings.get(method_name) or {}, settings.get("precision", "float32")
    )
    objective = ClassificationObjective(method, RandomCropFlip(augment["crop_padding"], augment["flip"]))
    # an adversarially trained classifier's curve also shows PGD-10 accuracy at its training eps on the first
    # PGD_CURVE_IMAGES test images (catastrophic overfitting of fast AT shows there first)
    curve_eps = (settings.get(method_name) or {}).get("epsilon") if method_name != STANDARD else None

    def evaluate():
        pred = predict(model, test_x, eval_batch_size, device)
        row = {"test_accuracy": float((pred == test_y).float().mean())}
        if curve_eps is not None:
            n = min(PGD_CURVE_IMAGES, len(test_y))
            x = to_float_pixels(test_x[:n])
            row["test_pgd_accuracy"] = pgd_accuracy(model, x, test_y[:n], curve_eps, eval_batch_size, seed)
        return row

    log.info(
        "training ResNet-%d (%d parameters, %s) on %d images, %s, %d epochs, %s",
        settings["depth"],
        sum(p.numel() for p in model.parameters()),
        method_name,
        len(train_y),
        device,
        settings["epochs"],
        settings.get("precision", "float32"),
    )
    run = TrainingRun(
        Path(state_path), Path(log_path), run_settings("classifier", settings, seed, data.dataset_sha256)
    )
    fit(
        model,
        objective,
        (train_x, train_y),
        optimizer,
        FitSettings(settings["epochs"], settings["batch_size"], settings["schedule"], name="classifier"),
        generator,
        run,
        evaluate=evaluate,
    )
    report = accuracy_report(predict(model, test_x, eval_batch_size, device), test_y, data.class_names)
    metrics = {
        "test_accuracy": report["accuracy"],
        "per_class_accuracy": report["per_class_accuracy"],
        "test_images": report["n"],
        "train_images": int(len(train_y)),
        "dataset": str(dataset_path),
        "seed": seed,
    }
    return finish_training(
        "classifier",
        model,
        run,
        device,
        len(train_y),
        model_path,
        metrics_path,
        metrics,
        {"test_accuracy": report["accuracy"], "seed": seed, "dataset": str(dataset_path)},
    )


def import_classifier(
    source: CheckpointSource,
    dataset_path: str | Path,
    model_path: str | Path,
    metrics_path: str | Path,
    *,
    device: str = "auto",
    eval_batch_size: int = 1000,
) -> dict:
    """Bring your own classifier (`classifier.source: checkpoint`, `source` its block): check its sha256 pin,
    load it (a torch.export program, TorchScript, or `builder` + a state dict with weights_only=True), check that
    it gives N x classes logits in eval-safe form, store it in the pipeline's checkpoint format (every later stage
    loads it like a trained ResNet) and measure its test accuracy."""
    checkpoint, builder = source.path, source.builder
    t0 = time.perf_counter()
    found = check_sha256_pin(checkpoint, source.sha256, "classifier.checkpoint.sha256")
    model, fmt = load_user_model(checkpoint, builder)
    provenance = {"imported_from": str(checkpoint), "sha256": found}
    if builder is not None:  # what the stored model was built with (information only: never run again)
        builder_file = builder_source(builder)
        provenance.update(
            {"builder": builder, "builder_sha256": file_sha256(builder_file) if builder_file else None}
        )
    metrics = {
        "source": "checkpoint",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": found,
        "format": fmt,
        **{k: v for k, v in provenance.items() if k.startswith("builder")},
    }
    brought = BroughtClassifier(model, fmt, provenance, metrics, source.mean, source.std)
    return _store_brought_classifier(
        brought, dataset_path, model_path, metrics_path, device, eval_batch_size, t0
    )


def import_robustbench_classifier(
    settings: dict,
    dataset: str,
    dataset_path: str | Path,
    model_path: str | Path,
    metrics_path: str | Path,
    *,
    device: str = "auto",
    eval_batch_size: int = 1000,
) -> dict:
    """A RobustBench zoo model (`classifier.source: robustbench`, `settings` = `classifier.robustbench`): loaded
    by the package from its zoo layout (downloaded only where the file is absent), its checkpoint checked
    against the sha256 pin, then the checks of a brought classifier, exported (torch.export) and stored."""
    from .models.robustbench_zoo import load_zoo_model

    t0 = time.perf_counter()
    model, path, downloaded = load_zoo_model(
        settings["name"], settings["threat_model"], dataset, settings["model_dir"], settings["sha256"]
    )
    provenance = {"imported_from": str(path), "sha256": settings["sha256"], "robustbench": settings["name"]}
    metrics = {
        "source": "robustbench",
        "robustbench_name": settings["name"],
        "robustbench_threat_model": settings["threat_model"],
        "robustbench_dataset": dataset,
        "architecture": type(model).__name__,
        "checkpoint": str(path),
        "checkpoint_sha256": settings["sha256"],
        "downloaded": downloaded,
        "format": "robustbench",
    }
    brought = BroughtClassifier(model, "robustbench", provenance, metrics)
    return _store_brought_classifier(
        brought, dataset_path, model_path, metrics_path, device, eval_batch_size, t0
    )


BROUGHT_PROGRAMS = ("export", "torchscript")  # brought as a program: stored as it came


@dataclass
class BroughtClassifier:
    """A classifier brought from outside, before the import checks: the model as loaded, the format it came in,
    what the stored checkpoint records of its origin, the metrics so far, and its input normalisation."""

    model: torch.nn.Module
    fmt: str  # export, torchscript, state_dict (a builder's model) or robustbench
    provenance: dict
    metrics: dict
    mean: list[float] | None = None
    std: list[float] | None = None


def _store_brought_classifier(
    brought: BroughtClassifier,
    dataset_path: str | Path,
    model_path: str | Path,
    metrics_path: str | Path,
    device: str,
    eval_batch_size: int,
    t0: float,
) -> dict:
    """What every brought classifier goes through: the import checks on random and real images (N x classes
    finite logits, not probabilities, eval-safe), a torch.export program where it is not a program already
    (checked against the model; a TorchScript trace where export fails), storage in the pipeline's checkpoint
    format, and its test accuracy measured on exactly what the later stages will load."""
    model, fmt, mean, std = brought.model, brought.fmt, brought.mean, brought.std
    names, test = class_names(dataset_path), read_split(dataset_path, "test")
    num_classes = len(names)
    real = to_float_pixels(
        torch.from_numpy(test.images[:CHECK_IMAGES])
    )  # on the 8-bit grid, as every image is
    if fmt not in BROUGHT_PROGRAMS:  # stored as a program: no later job calls the builder (nor code it names)
        check_classifier_model(
            ExternalClassifier(model, num_classes, fmt, mean, std),
            num_classes,
            real,
            batch_size=eval_batch_size,
        )
        inputs = ((real - _as_channels(mean, 0.0)) / _as_channels(std, 1.0)).contiguous()
        model = stored_program(model, inputs, f"the classifier ({fmt})")
    wrapped = ExternalClassifier(model, num_classes, fmt, mean, std).eval()
    check_classifier_model(wrapped, num_classes, real, batch_size=eval_batch_size)
    save_checkpoint(model_path, "classifier", wrapped, brought.provenance)
    device = resolve_device(device)
    model = load_classifier(model_path, device)  # exactly what the later stages will evaluate
    test_x, test_y = torch.from_numpy(test.images), torch.from_numpy(test.labels)
    report = accuracy_report(predict(model, test_x, eval_batch_size, device), test_y, names)
    stored = wrapped.arch["format"]
    metrics = {
        **brought.metrics,
        "stored_as": stored if fmt in BROUGHT_PROGRAMS else f"{stored} (made from the {fmt} model at import)",
        "test_accuracy": report["accuracy"],
        "per_class_accuracy": report["per_class_accuracy"],
        "test_images": report["n"],
        "parameters": sum(p.numel() for p in wrapped.parameters()),
        "device": str(device),
        "dataset": str(dataset_path),
        "wall_seconds_this_run": round(time.perf_counter() - t0, 2),
    }
    write_json(metrics_path, metrics)
    log.info(
        "imported %s (%s): test accuracy %.2f%% over %d images",
        brought.provenance["imported_from"],
        fmt,
        100 * report["accuracy"],
        report["n"],
    )
    return metrics


CHECK_IMAGES = 64  # real test images the import checks run on


def _as_channels(values: list[float] | None, default: float) -> torch.Tensor:
    return torch.tensor(values if values is not None else [default] * 3).view(1, 3, 1, 1)


def load_classifier(path: str | Path, device: str | torch.device = "cpu"):
    """Load a classifier checkpoint (the pipeline's own format: a trained ResNet or a stored brought model)."""
    model, _ = load_checkpoint(path, "classifier", map_location=device)
    return model
