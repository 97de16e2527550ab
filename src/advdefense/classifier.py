"""Classifier stage: train a CIFAR ResNet on the dataset file and report its test accuracy."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import RandomCropFlip
from .config import ConfigError
from .h5io import write_json
from .models import CifarResNet, load_checkpoint, save_checkpoint
from .training import TrainingRun, channels_last_on_cuda, fit, lr_lambda, predict, prepare_training, to_float_pixels

log = logging.getLogger(__name__)


def classifier_arch(cfg: dict, num_classes: int = 10) -> dict:
    c = cfg["classifier"]
    return {"name": "resnet", "depth": c["depth"], "num_classes": num_classes, "width": c["width"]}


class ClassificationObjective:
    """Cross-entropy on augmented uint8 batches; reports loss and correct counts."""

    def __init__(self, model: torch.nn.Module, augment: RandomCropFlip):
        self.model = model
        self.augment = augment

    def __call__(self, batch, generator):
        images, labels = batch
        x = self.augment(to_float_pixels(images), generator)
        logits = self.model(x)
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum().item()
        return loss, {"loss": loss.item() * len(labels), "accuracy": correct}


def accuracy_report(pred: torch.Tensor, labels: torch.Tensor, class_names) -> dict:
    correct = pred == labels
    per_class = {}
    for k, name in enumerate(class_names):
        mask = labels == k
        per_class[name] = float(correct[mask].float().mean()) if mask.any() else float("nan")
    return {"accuracy": float(correct.float().mean()), "per_class_accuracy": per_class, "n": int(len(labels))}


def train_classifier(dataset_path: str | Path, cfg: dict, model_path: str | Path, metrics_path: str | Path,
                     log_path: str | Path, state_path: str | Path) -> dict:
    """Train (or resume training) the configured ResNet; write checkpoint, metrics and log."""
    c = cfg["classifier"]
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(c[key], int) or c[key] < 1:
            raise ConfigError(f"classifier.{key}: must be a positive integer, got {c[key]!r}")
    if not c["optimizer"]["lr"] > 0:
        raise ConfigError(f"classifier.optimizer.lr: must be positive, got {c['optimizer']['lr']!r}")
    data = prepare_training(dataset_path, cfg, seed_offset=0)
    device, generator = data.device, data.generator
    train_x, train_y, test_x, test_y = data.train_x, data.train_y, data.test_x, data.test_y
    num_classes = len(data.class_names)

    model = channels_last_on_cuda(CifarResNet(c["depth"], num_classes, c["width"]).to(device), device)
    opt_cfg = c["optimizer"]
    optimizer = torch.optim.SGD(model.parameters(), lr=opt_cfg["lr"], momentum=opt_cfg["momentum"],
                                nesterov=opt_cfg["nesterov"] and opt_cfg["momentum"] > 0,
                                weight_decay=opt_cfg["weight_decay"])
    steps = -(-len(train_y) // c["batch_size"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(c["schedule"], c["epochs"], steps))
    objective = ClassificationObjective(model, RandomCropFlip(c["augment"]["crop_padding"], c["augment"]["flip"]))

    def evaluate():
        pred = predict(model, test_x, c["eval_batch_size"], device)
        return {"test_accuracy": float((pred == test_y).float().mean())}

    log.info("training ResNet-%d (%d parameters) on %d images, %s, %d epochs",
             c["depth"], sum(p.numel() for p in model.parameters()), len(train_y), device, c["epochs"])
    t0 = time.perf_counter()
    run = TrainingRun(Path(state_path), Path(log_path))
    history = fit(model, objective, (train_x, train_y), optimizer, scheduler, c["epochs"], c["batch_size"],
                  generator, run, evaluate=evaluate, name="classifier")
    wall = time.perf_counter() - t0

    pred = predict(model, test_x, c["eval_batch_size"], device)
    report = accuracy_report(pred, test_y, data.class_names)
    train_seconds = sum(row["train_seconds"] for row in history)
    metrics = {
        "test_accuracy": report["accuracy"],
        "per_class_accuracy": report["per_class_accuracy"],
        "test_images": report["n"],
        "train_images": int(len(train_y)),
        "epochs": c["epochs"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.arch,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "wall_seconds_this_run": round(wall, 2),
        "train_seconds_all_epochs": round(train_seconds, 2),
        "mean_epoch_seconds": round(train_seconds / len(history), 3),
        "train_images_per_s": round(len(train_y) * len(history) / train_seconds, 1),
        "dataset": str(dataset_path),
        "seed": cfg["seed"],
    }
    save_checkpoint(model_path, "classifier", model, {"test_accuracy": report["accuracy"], "seed": cfg["seed"],
                                                      "dataset": str(dataset_path)})
    write_json(metrics_path, metrics)
    Path(state_path).unlink(missing_ok=True)
    return metrics


def load_classifier(path: str | Path, cfg: dict | None = None, device: str | torch.device = "cpu"):
    """Load the classifier checkpoint; with `cfg`, refuse one whose architecture differs from it."""
    expected = classifier_arch(cfg) if cfg is not None else None
    if expected is not None:
        expected.pop("num_classes")
    model, _ = load_checkpoint(path, "classifier", expected, map_location=device)
    return model
