"""Purification stage: each purifier of `purification.methods` (`advdefense.purifiers`: the paper's autoencoder,
trained here on clean images, JPEG, bit-depth reduction, median smoothing) cleans attacked images, and the
adaptive attack runs through purifier + classifier.

Purified files (`results/purified/<run>/<purifier>/<attack>/eps<eps>/<split>.h5`, and `clean/<split>.h5`)::

    purified       float32 N x 3 x 32 x 32   purifier output in [0, 1]
    pred_purified  int64 N                   classifier prediction on `purified`
    index, label, pred_clean                 as in the attack file (clean: prediction without the purifier)
    pred_adv, success                        (attack files only) copied from the attack file
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .attack_files import ATTACK_DATASETS, iter_adversarial_batches, read_attack_file
from .attacks import attack_split
from .classifier import load_classifier
from .data import attacked_images, read_split
from .errors import PipelineFileError
from .h5io import atomic_h5, provenance_attrs, write_json
from .inference import check_finite, evaluation_model, predict, to_float_pixels
from .models.autoencoder import ConvAutoencoder
from .models.checkpoint import save_checkpoint
from .plan.decisions import adaptive_spec
from .plan.jobs import AttackJob
from .plan.names import file_sha256
from .progress import ProgressLog
from .purified_files import SOURCE_DATASETS, PurifiedFileWriter
from .purifiers import adaptive_model, autoencoder_arch, build_purifier, checked_output, load_autoencoder
from .runtime import resolve_device
from .training import FitSettings, TrainingRun, finish_training, fit, prepare_training, run_settings

log = logging.getLogger(__name__)


def psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")


class ReconstructionObjective:
    """MSE between the reconstruction of a (noisy) clean image and the clean image."""

    def __init__(self, model: torch.nn.Module, noise_std: float):
        self.model = model
        self.noise_std = noise_std

    def __call__(self, batch, generator):
        (images,) = batch
        x = to_float_pixels(images)
        inp = x
        if self.noise_std > 0:
            inp = (x + self.noise_std * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)
        loss = F.mse_loss(self.model(inp), x)
        return loss, {"mse": loss.detach() * len(x)}


@torch.inference_mode()
def reconstruction_mse(model, images: torch.Tensor, batch_size: int, device) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = to_float_pixels(images[start : start + batch_size].to(device))
        total += F.mse_loss(model(x), x, reduction="sum").item() / x[0].numel()
    return total / len(images)


def train_autoencoder(
    dataset_path,
    settings: dict,
    seed: int,
    model_path,
    metrics_path,
    log_path,
    state_path,
    *,
    device: str = "auto",
    eval_batch_size: int = 1000,
) -> dict:
    """Train the purifier with the `autoencoder` settings on clean training images (Adam, cosine schedule)."""
    data = prepare_training(dataset_path, device, seed + 2)
    device, generator, train_x, test_x = data.device, data.generator, data.train_x, data.test_x
    arch = autoencoder_arch(settings)
    arch.pop("name")
    model = ConvAutoencoder(**arch).to(device)
    adam = settings["optimizer"]
    optimizer = torch.optim.Adam(model.parameters(), lr=adam["lr"], weight_decay=adam["weight_decay"])

    def evaluate():
        mse = reconstruction_mse(model, test_x, eval_batch_size, device)
        return {"test_mse": mse, "test_psnr": psnr(mse)}

    run = TrainingRun(
        Path(state_path), Path(log_path), run_settings("autoencoder", settings, seed, data.dataset_sha256)
    )
    history = fit(
        model,
        ReconstructionObjective(model, settings["noise_std"]),
        (train_x,),
        optimizer,
        FitSettings(settings["epochs"], settings["batch_size"], {"name": "cosine"}, "autoencoder"),
        generator,
        run,
        evaluate=evaluate,
    )
    metrics = {
        "test_mse": history[-1]["test_mse"],
        "test_psnr": history[-1]["test_psnr"],
        "noise_std": settings["noise_std"],
        "code_values": model.code_values,  # per image, against 3 x 32 x 32 = 3072 pixel values
        "code_fraction": model.code_values / (3 * 32 * 32),
    }
    return finish_training(
        "autoencoder",
        model,
        run,
        device,
        len(train_x),
        model_path,
        metrics_path,
        metrics,
        {"test_psnr": metrics["test_psnr"], "seed": seed},
    )


def import_autoencoder(
    checkpoint,
    sha256: str,
    dataset_path,
    model_path,
    metrics_path,
    *,
    device: str = "auto",
    eval_batch_size: int = 1000,
) -> dict:
    """A sweep point's brought autoencoder (another run's `model.pt` of this stage, pinned by its sha256): checked,
    measured on this run's clean test images (PSNR) and stored as this run's; its training settings (widths,
    noise, epochs) come from the file and from the `metrics.json` beside it where there is one."""
    found = file_sha256(checkpoint)
    if found != sha256:
        raise PipelineFileError(f"{checkpoint}: sha256 {found}, but the config pins {sha256}")
    device = resolve_device(device)
    model = load_autoencoder(checkpoint, device)
    test_x = torch.from_numpy(read_split(dataset_path, "test").images)
    mse = reconstruction_mse(model, test_x, eval_batch_size, device)
    source = Path(checkpoint).with_name("metrics.json")
    trained = json.loads(source.read_text()) if source.is_file() else {}
    metrics = {
        "test_mse": mse,
        "test_psnr": psnr(mse),
        "noise_std": trained.get("noise_std"),
        "epochs": trained.get("epochs"),
        "architecture": model.arch,
        "code_values": model.code_values,
        "code_fraction": model.code_values / (3 * 32 * 32),
        "source": str(checkpoint),
        "source_sha256": sha256,
        "source_test_psnr": trained.get("test_psnr"),  # on its own run's test images
    }
    save_checkpoint(
        model_path, "autoencoder", model, {"test_psnr": metrics["test_psnr"], "source": str(checkpoint)}
    )
    write_json(metrics_path, metrics)
    return metrics


# ----------------------------------------------------------------------------- purify jobs
@torch.inference_mode()
def _purify_into(writer: PurifiedFileWriter, purifier, classifier, batches, device) -> None:
    start = 0
    progress = ProgressLog(log, f"purify {writer.f.filename}", writer.n)
    for x in batches:
        x = torch.as_tensor(x).to(device).float()
        cleaned = checked_output(purifier.name, x, purifier(x), start)
        logits = classifier(cleaned)
        check_finite(logits, "the classifier's logits on purified images", start)
        writer.write(start, cleaned.cpu().numpy(), logits.argmax(1).cpu().numpy())
        start += len(x)
        progress.update(start)


@dataclass(frozen=True)
class PurifierSetup:
    """One purifier of `purification.methods`: its name, its settings block and {model name: checkpoint} of
    the models it needs (the autoencoder's)."""

    name: str
    settings: dict
    models: dict

    def build(self, device):
        return build_purifier(self.name, self.settings, self.models, device)

    def attrs(self) -> dict:
        return {"purifier": self.name, **provenance_attrs(**self.models)}


def _evaluation_models(setup: PurifierSetup, classifier_path, device: str):
    """The purifier and the evaluation copy (`inference.evaluation_model`) of the classifier."""
    device = resolve_device(device)
    return setup.build(device), evaluation_model(load_classifier(classifier_path, device), device), device


def purify_attack_file(
    attack_path,
    setup: PurifierSetup,
    classifier_path,
    out_path,
    *,
    data=None,
    device: str = "auto",
    batch_size: int = 500,
) -> dict:
    """The adversarials of one attack file through the purifier, and the classifier on the result. With `data`
    (the dataset file) the attack file is checked against it first (positions, labels, norms)."""
    purifier, classifier, device = _evaluation_models(setup, classifier_path, device)
    require = ATTACK_DATASETS if data is not None else ("index", "label", "pred_clean", "pred_adv", "success")
    meta = read_attack_file(attack_path, require=require, data=data)
    n = len(meta)
    t0 = time.perf_counter()
    with atomic_h5(out_path) as f:
        writer = PurifiedFileWriter(f, "attack", meta.arrays(SOURCE_DATASETS["attack"]))
        _purify_into(writer, purifier, classifier, iter_adversarial_batches(attack_path, batch_size), device)
        a = meta.attrs
        writer.finish(
            {
                "attack": a["attack"],
                "epsilon": float(a["epsilon"]),
                "split": a.get("split", ""),
                "source": str(attack_path),
                **setup.attrs(),
                "seconds": time.perf_counter() - t0,
            }
        )
        acc = float((f["pred_purified"][()] == meta.label).mean())
    log.info("%s: accuracy after %s %.2f%% over %d images", out_path, setup.name, 100 * acc, n)
    return {"n": n, "accuracy_after": acc}


def purify_clean(
    dataset_path,
    setup: PurifierSetup,
    classifier_path,
    split: str,
    out_path,
    *,
    images: int | None,
    seed: int,
    device: str = "auto",
    batch_size: int = 500,
) -> dict:
    """The clean images the attacks used, through the purifier: the defence's clean-accuracy cost."""
    purifier, classifier, device = _evaluation_models(setup, classifier_path, device)
    data, index = attacked_images(dataset_path, split, images, seed)
    batches = (
        data.images[s : s + batch_size].astype(np.float32) / 255.0 for s in range(0, len(index), batch_size)
    )
    pred_clean = predict(classifier, torch.from_numpy(data.images), batch_size, device).numpy()
    with atomic_h5(out_path) as f:
        writer = PurifiedFileWriter(
            f, "clean", {"index": index, "label": data.labels, "pred_clean": pred_clean}
        )
        _purify_into(writer, purifier, classifier, batches, device)
        writer.finish({"split": split, "source": str(dataset_path), **setup.attrs()})
    return {"n": len(index)}


@dataclass(frozen=True)
class AdaptiveSettings:
    """`purification.adaptive` for one job: test images (None: every attacked one), runs per image in place of
    the attack's own `restarts` (None: the attack's own), Foolbox parameters overriding the attack's, and the
    draws averaged per step where the purifier is random (EOT)."""

    images: int | None = None
    restarts: int | None = None
    params: dict = field(default_factory=dict)
    eot_samples: int = 10


def adaptive_attack(
    dataset_path,
    classifier_path,
    setup: PurifierSetup,
    job: AttackJob,
    out_path,
    *,
    adaptive: AdaptiveSettings = AdaptiveSettings(),
    device: str = "auto",
) -> dict:
    """White-box attack on the defended model: `job`'s attack on the test images (its Foolbox `params`
    overridden by `adaptive.params`, e.g. more steps) through purifier + classifier, differentiated as the
    purifier declares (its true gradient, or BPDA; EOT where it is random), on the first `adaptive.images` of the
    attacked test images; `adaptive.restarts` runs per image in place of the attack's own
    (`attack_methods.Restarts`: again on the images no earlier run fooled, the first success kept)."""
    purifier, classifier, where = _evaluation_models(setup, classifier_path, device)
    defended = adaptive_model(purifier, classifier, adaptive.eot_samples)
    defended.is_evaluation_copy = True  # made of evaluation copies: attack_split uses it as it is
    job = replace(
        job,
        split="test",
        spec=adaptive_spec(job.spec, adaptive.params, adaptive.restarts),
        limit=adaptive.images,
    )
    attrs = {
        "defense": setup.name,
        "adaptive": True,
        "gradient": purifier.spec.adaptive_label,
        **provenance_attrs(classifier=classifier_path, **setup.models),
    }
    return attack_split(defended, dataset_path, job, out_path, device=device, attrs=attrs)
