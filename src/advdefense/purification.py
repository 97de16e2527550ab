"""Purification stage (paper method 1): an autoencoder trained on clean images cleans attacked ones.

Purified files (`results/purified/<dataset>/<attack>/eps<eps>/<split>.h5`, and `clean/<split>.h5`)::

    purified       float32 N x 3 x 32 x 32   autoencoder output in [0, 1]
    pred_purified  int64 N                   classifier prediction on `purified`
    index, label, pred_clean                 as in the attack file (clean: prediction without the autoencoder)
    pred_adv, success                        (attack files only) copied from the attack file
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .attacks import attack_indices, attack_split, eps_tag, iter_adversarial_batches, read_attack_file
from .classifier import load_classifier
from .errors import ConfigError
from .runtime import resolve_device
from .data import read_dataset_h5
from .h5io import atomic_h5, file_sha256, library_versions, read_h5
from .models import load_checkpoint
from .models.autoencoder import ConvAutoencoder, Purified
from .inference import evaluation_model, predict, to_float_pixels
from .training import TrainingRun, finish_training, fit, lr_lambda, prepare_training, run_settings

log = logging.getLogger(__name__)
PURIFIED_FORMAT = "advdefense-purified-v1"


def autoencoder_arch(cfg: dict) -> dict:
    a = cfg["autoencoder"]
    return {"name": "autoencoder", "widths": list(a["widths"]), "kernel": a["kernel"], "activation": a["activation"],
            "batch_norm": a["batch_norm"]}


def load_autoencoder(path, cfg: dict | None = None, device="cpu") -> ConvAutoencoder:
    expected = autoencoder_arch(cfg) if cfg is not None else None
    model, _ = load_checkpoint(path, "autoencoder", expected, map_location=device)
    return model


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


def train_autoencoder(dataset_path, cfg: dict, model_path, metrics_path, log_path, state_path) -> dict:
    a = cfg["autoencoder"]
    data = prepare_training(dataset_path, cfg, seed_offset=2)
    device, generator, train_x, test_x = data.device, data.generator, data.train_x, data.test_x
    arch = autoencoder_arch(cfg)
    arch.pop("name")
    model = ConvAutoencoder(**arch).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=a["optimizer"]["lr"], weight_decay=a["optimizer"]["weight_decay"])
    steps = -(-len(train_x) // a["batch_size"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda({"name": "cosine"}, a["epochs"], steps))

    def evaluate():
        mse = reconstruction_mse(model, test_x, a["eval_batch_size"], device)
        return {"test_mse": mse, "test_psnr": psnr(mse)}

    t0 = time.perf_counter()
    run = TrainingRun(Path(state_path), Path(log_path), run_settings(a, cfg["seed"], data.dataset_sha256))
    history = fit(model, ReconstructionObjective(model, a["noise_std"]), (train_x,), optimizer, scheduler,
                  a["epochs"], a["batch_size"], generator, run, evaluate=evaluate, name="autoencoder")
    metrics = {"test_mse": history[-1]["test_mse"], "test_psnr": history[-1]["test_psnr"], "noise_std": a["noise_std"]}
    return finish_training("autoencoder", model, history, run, device, len(train_x), t0, model_path, metrics_path,
                           metrics, {"test_psnr": metrics["test_psnr"], "seed": cfg["seed"]})


# ----------------------------------------------------------------------------- purify jobs
@torch.inference_mode()
def _purify_into(f: h5py.File, autoencoder, classifier, batches, n: int, device) -> None:
    # uncompressed like the attack files' images: float32 pixels barely compress, and gzip would be
    # slower than the autoencoder + classifier themselves
    out = f.create_dataset("purified", (n, 3, 32, 32), np.float32, chunks=(min(n, 128), 3, 32, 32))
    pred = f.create_dataset("pred_purified", (n,), np.int64)
    start = 0
    for x in batches:
        x = torch.as_tensor(x).to(device).float()
        cleaned = autoencoder(x).clamp_(0, 1)
        out[start : start + len(x)] = cleaned.cpu().numpy()
        pred[start : start + len(x)] = classifier(cleaned).argmax(1).cpu().numpy()
        start += len(x)
    if start != n:
        raise RuntimeError(f"purified {start} of {n} images")


def _models(ae_path, classifier_path, cfg):
    device = resolve_device(cfg["device"])
    autoencoder = load_autoencoder(ae_path, cfg, device).eval()
    classifier = load_classifier(classifier_path, cfg, device).eval()
    return autoencoder, classifier, device


def _evaluation_models(ae_path, classifier_path, cfg):
    """The evaluation copies (`inference.evaluation_model`) of the autoencoder and the classifier."""
    autoencoder, classifier, device = _models(ae_path, classifier_path, cfg)
    return evaluation_model(autoencoder, device), evaluation_model(classifier, device), device


def purify_attack_file(attack_path, ae_path, classifier_path, cfg: dict, out_path) -> dict:
    autoencoder, classifier, device = _evaluation_models(ae_path, classifier_path, cfg)
    meta = read_attack_file(attack_path, require=("index", "label", "pred_clean", "pred_adv", "success"))
    n, bs = len(meta["index"]), cfg["purification"]["batch_size"]

    t0 = time.perf_counter()
    with atomic_h5(out_path) as f:
        for k in ("index", "label", "pred_clean", "pred_adv", "success"):
            f.create_dataset(k, data=meta[k])
        _purify_into(f, autoencoder, classifier, iter_adversarial_batches(attack_path, bs), n, device)
        a = meta["attrs"]
        f.attrs.update({"format": PURIFIED_FORMAT, "kind": "attack", "attack": a["attack"],
                        "epsilon": float(a["epsilon"]), "split": a.get("split", ""), "source": str(attack_path),
                        "autoencoder_sha256": file_sha256(ae_path), "seconds": time.perf_counter() - t0,
                        "versions": json.dumps(library_versions(), sort_keys=True)})
        acc = float((f["pred_purified"][()] == meta["label"]).mean())
    log.info("%s: accuracy after purification %.2f%% over %d images", out_path, 100 * acc, n)
    return {"n": n, "accuracy_after": acc}


def purify_clean(dataset_path, ae_path, classifier_path, cfg: dict, split: str, out_path) -> dict:
    """The clean images the attacks used, through the autoencoder: the defence's clean-accuracy cost."""
    autoencoder, classifier, device = _evaluation_models(ae_path, classifier_path, cfg)
    data = read_dataset_h5(dataset_path).split(split)
    index = attack_indices(len(data), cfg["attack_defaults"]["images"][split], cfg["seed"],
                           f"attack_defaults.images.{split}")
    bs = cfg["purification"]["batch_size"]
    batches = (data.images[index[s : s + bs]].astype(np.float32) / 255.0 for s in range(0, len(index), bs))
    pred_clean = predict(classifier, torch.from_numpy(data.images[index]), bs, device).numpy()
    with atomic_h5(out_path) as f:
        f.create_dataset("index", data=index)
        f.create_dataset("label", data=data.labels[index])
        f.create_dataset("pred_clean", data=pred_clean)
        _purify_into(f, autoencoder, classifier, batches, len(index), device)
        f.attrs.update({"format": PURIFIED_FORMAT, "kind": "clean", "split": split, "source": str(dataset_path),
                        "autoencoder_sha256": file_sha256(ae_path),
                        "versions": json.dumps(library_versions(), sort_keys=True)})
    return {"n": len(index)}


def adaptive_attack(dataset_path, classifier_path, ae_path, cfg: dict, name: str, eps: float, out_path) -> dict:
    """White-box attack on the defended model: the configured attack through autoencoder + classifier."""
    autoencoder, classifier, device = _models(ae_path, classifier_path, cfg)
    defended = Purified(autoencoder, classifier).to(device).eval()
    attrs = {"defense": "autoencoder", "adaptive": True, "classifier_sha256": file_sha256(classifier_path),
             "autoencoder_sha256": file_sha256(ae_path)}
    return attack_split(defended, dataset_path, cfg, name, eps, "test", out_path,
                        images=cfg["purification"]["adaptive"]["images"], attrs=attrs)


def read_purified(path) -> dict:
    """A purified file without its images (the tables need labels and predictions only)."""
    return read_h5(path, PURIFIED_FORMAT, "purified", skip=("purified",))


# ----------------------------------------------------------------------------- Table 3
PAPER_TABLE3 = {"fgsm": 47.92, "pgd": 53.62, "deepfool": 55.90, "overall": 52.39}
TABLE3_ROWS = [
    "Successful adversarials: before purification",
    "Successful adversarials: after purification",
    "Successful adversarials: count",
    "All attacked images: before purification",
    "All attacked images: after purification",
    "Adaptive attack through the autoencoder: accuracy",
    "Clean images: without autoencoder",
    "Clean images: with autoencoder",
]


def _pct(mask_or_values) -> float:
    values = np.asarray(mask_or_values, dtype=float)
    return float(100.0 * values.mean()) if values.size else float("nan")


def table3(columns: list[tuple[str, float]], purified: dict, adaptive: dict, clean_path) -> pd.DataFrame:
    """Accuracy (%) of the classifier, rows as TABLE3_ROWS, one column per (attack, eps) plus 'overall'.

    `purified` and `adaptive` map (attack, eps) to file paths (adaptive may be empty)."""
    data = {}
    pooled = {k: [] for k in ("succ_before", "succ_after", "all_before", "all_after", "adaptive")}
    for key in columns:
        if key not in purified:
            raise ConfigError(f"tables.table3.attacks: no purified test file for {key[0]} at eps {key[1]} "
                              "(was the attack generated?)")
        p = read_purified(purified[key])
        succ = p["success"].astype(bool)
        after_ok = p["pred_purified"] == p["label"]
        before_ok = p["pred_adv"] == p["label"]
        col = {
            TABLE3_ROWS[0]: _pct(before_ok[succ]),
            TABLE3_ROWS[1]: _pct(after_ok[succ]),
            TABLE3_ROWS[2]: int(succ.sum()),
            TABLE3_ROWS[3]: _pct(before_ok),
            TABLE3_ROWS[4]: _pct(after_ok),
        }
        pooled["succ_before"].append(before_ok[succ])
        pooled["succ_after"].append(after_ok[succ])
        pooled["all_before"].append(before_ok)
        pooled["all_after"].append(after_ok)
        if key in adaptive:
            a = read_attack_file(adaptive[key], require=("label", "pred_adv"))
            ok = a["pred_adv"] == a["label"]
            col[TABLE3_ROWS[5]] = _pct(ok)
            pooled["adaptive"].append(ok)
        else:
            col[TABLE3_ROWS[5]] = float("nan")
        data[column_name(*key)] = col
    clean = read_purified(clean_path)
    cat = {k: np.concatenate(v) if v else np.array([]) for k, v in pooled.items()}
    data["overall"] = {
        TABLE3_ROWS[0]: _pct(cat["succ_before"]), TABLE3_ROWS[1]: _pct(cat["succ_after"]),
        TABLE3_ROWS[2]: int(cat["succ_after"].size), TABLE3_ROWS[3]: _pct(cat["all_before"]),
        TABLE3_ROWS[4]: _pct(cat["all_after"]), TABLE3_ROWS[5]: _pct(cat["adaptive"]),
    }
    for col in data.values():
        col[TABLE3_ROWS[6]] = _pct(clean["pred_clean"] == clean["label"])
        col[TABLE3_ROWS[7]] = _pct(clean["pred_purified"] == clean["label"])
    # object columns built from Series: the count row stays integer next to the percentages
    table = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in data.items()}).reindex(TABLE3_ROWS)
    table.index.name = "row"
    return table


def column_name(attack: str, eps: float) -> str:

    return f"{attack} (eps={eps_tag(eps)})"
