"""Classifier stage: train a CIFAR ResNet on the dataset file and report its test accuracy."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .augment import RandomCropFlip
from .errors import ConfigError
from .models import CifarResNet, load_checkpoint
from .inference import channels_last, predict, to_float_pixels
from .training import TrainingRun, finish_training, fit, lr_lambda, prepare_training, run_settings

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
            correct = (logits.argmax(1) == labels).sum()
        return loss, {"loss": loss.detach() * len(labels), "accuracy": correct}


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

    model = channels_last(CifarResNet(c["depth"], num_classes, c["width"]).to(device))
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
    run = TrainingRun(Path(state_path), Path(log_path), run_settings(c, cfg["seed"], data.dataset_sha256))
    history = fit(model, objective, (train_x, train_y), optimizer, scheduler, c["epochs"], c["batch_size"],
                  generator, run, evaluate=evaluate, name="classifier")
    report = accuracy_report(predict(model, test_x, c["eval_batch_size"], device), test_y, data.class_names)
    metrics = {
        "test_accuracy": report["accuracy"],
        "per_class_accuracy": report["per_class_accuracy"],
        "test_images": report["n"],
        "train_images": int(len(train_y)),
        "dataset": str(dataset_path),
        "seed": cfg["seed"],
    }
    return finish_training("classifier", model, history, run, device, len(train_y), t0, model_path, metrics_path,
                           metrics, {"test_accuracy": report["accuracy"], "seed": cfg["seed"], "dataset": str(dataset_path)})


def load_classifier(path: str | Path, cfg: dict | None = None, device: str | torch.device = "cpu"):
    """Load the classifier checkpoint; with `cfg`, refuse one whose architecture differs from it."""
    expected = classifier_arch(cfg) if cfg is not None else None
    if expected is not None:
        expected.pop("num_classes")
    model, _ = load_checkpoint(path, "classifier", expected, map_location=device)
    return model
