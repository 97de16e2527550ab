"""Flow stage: train a Glow or import the published checkpoint, and extract latents.

Latent files (`results/latents/<dataset>/clean/<split>.h5` and
`results/latents/<dataset>/<attack>/eps<eps>/<split>.h5`)::

    z      float32 N x C x H x W   top latent (48 x 4 x 4 for the paper's L=3 Glow on 32x32)
    bpd    float32 N               bits/dim of each image, deterministic (no dequantisation noise)
    index  int64 N                 image index in the dataset split (lines clean and attacked up)
    label  int64 N
    success, pred_adv              (attack files only) copied from the attack file
    attrs: kind (clean|attack), source file, flow_sha256, split, [attack, epsilon]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .attack_files import iter_adversarial_batches, read_attack_file
from .data import attacked_images, read_split
from .errors import ConfigError
from .h5io import provenance_attrs, write_json
from .inference import to_float_pixels
from .latent_files import write_latents
from .models import CheckpointError, load_checkpoint, save_checkpoint
from .models.archives import check_archive
from .models.glow import Glow
from .plan.names import file_sha256
from .runtime import resolve_device
from .training import (
    FitSettings,
    TrainingDiverged,
    TrainingRun,
    finish_training,
    fit,
    prepare_training,
    run_settings,
)

log = logging.getLogger(__name__)


def glow_arch(settings: dict, seed: int) -> dict:
    return {
        "name": "glow",
        "hidden_channels": settings["hidden_channels"],
        "K": settings["K"],
        "L": settings["L"],
        "actnorm_scale": settings["actnorm_scale"],
        "flow_permutation": settings["permutation"],
        "flow_coupling": settings["coupling"],
        "learn_top": settings["learn_top"],
        "image_shape": [3, 32, 32],
        "n_bits": 8,
        "seed": seed,
    }


def build_glow(settings: dict, seed: int) -> Glow:
    arch = glow_arch(settings, seed)
    arch.pop("name")
    return Glow(**arch)


# ----------------------------------------------------------------------------- published checkpoint
def load_published_glow(checkpoint: str | Path, hparams: str | Path) -> Glow:
    """Map the published `glow_affine_coupling.pt` (+ `hparams.json`) onto our Glow module."""
    checkpoint, hparams = Path(checkpoint), Path(hparams)
    for key, path in (("flow.pretrained.checkpoint", checkpoint), ("flow.pretrained.hparams", hparams)):
        if not path.is_file():
            raise ConfigError(f"{key}: file {path} does not exist")
    hp = _read_hparams(hparams)
    if hp.get("y_condition"):
        raise CheckpointError(f"{hparams}: class-conditional Glow (y_condition true) is not supported")
    if hp["flow_permutation"] == "invconv" and not hp.get("LU_decomposed", True):
        raise CheckpointError(f"{hparams}: only the LU-decomposed invertible 1x1 convolution is supported")
    shape = hp.get("image_shape", [32, 32, 3])
    image_shape = (shape[2], shape[0], shape[1])  # published as H, W, C
    model = Glow(
        hidden_channels=hp["hidden_channels"],
        K=hp["K"],
        L=hp["L"],
        actnorm_scale=hp.get("actnorm_scale", 1.0),
        flow_permutation=hp["flow_permutation"],
        flow_coupling=hp["flow_coupling"],
        learn_top=hp["learn_top"],
        image_shape=image_shape,
    )
    check_archive(
        checkpoint, f"flow.pretrained.checkpoint {checkpoint}"
    )  # declared sizes, before torch reads
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{checkpoint}: not loadable with weights_only=True ({type(exc).__name__}: "
            f"{str(exc)[:200]}); flow.pretrained.checkpoint must be glow_affine_coupling.pt (are "
            f"checkpoint and hparams swapped?)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{checkpoint}: expected a state_dict (a mapping of names to tensors)")
    check_state_dict(model, state, checkpoint)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{checkpoint}: {len(bad)} weight tensor(s) hold NaN or inf ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); refusing a flow that cannot give finite latents"
        )
    model.load_state_dict(state)
    return model.eval()


# the published hparams.json: key -> (what it must be, check)
_HPARAM_CHECKS = {
    "hidden_channels": (
        "a positive integer",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
    ),
    "K": ("a positive integer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
    "L": ("an integer from 1 to 5", lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5),
    "flow_permutation": (
        "one of invconv, shuffle, reverse",
        lambda v: v in ("invconv", "shuffle", "reverse"),
    ),
    "flow_coupling": ("affine or additive", lambda v: v in ("affine", "additive")),
    "learn_top": ("true or false", lambda v: isinstance(v, bool)),
    "actnorm_scale": (
        "a positive number",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
    ),
    "image_shape": (
        "[32, 32, 3] (height, width, channels of the pipeline's images)",
        lambda v: v == [32, 32, 3],
    ),
}


def _read_hparams(path: Path) -> dict:
    """The published hparams.json, each hyper-parameter the model is built from checked; errors name the file
    and the key."""
    try:
        text = path.read_bytes().decode("utf-8")
        hp = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not a JSON text file ({type(exc).__name__}); flow.pretrained.hparams must "
            f"be the hparams.json of glow.zip (are checkpoint and hparams swapped?)"
        ) from exc
    if not isinstance(hp, dict):
        raise CheckpointError(
            f"{path}: expected a JSON object of hyper-parameters, found {type(hp).__name__}"
        )
    missing = [
        k
        for k in ("hidden_channels", "K", "L", "flow_permutation", "flow_coupling", "learn_top")
        if k not in hp
    ]
    if missing:
        raise CheckpointError(f"{path}: missing hyper-parameter(s) {', '.join(missing)}")
    for key, (what, ok) in _HPARAM_CHECKS.items():
        if key in hp and not ok(hp[key]):
            raise CheckpointError(
                f"{path}: {key} must be {what}, found {hp[key]!r} ({type(hp[key]).__name__})"
            )
    return hp


def check_state_dict(model: torch.nn.Module, state: dict, source: Path) -> None:
    """Missing, unexpected or mis-shaped keys -> one CheckpointError that lists them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            problems.append(
                f"{len(items)} {label} ({', '.join(items[:4])}{', ...' if len(items) > 4 else ''})"
            )
    if problems:
        raise CheckpointError(f"{source}: does not match the Glow configuration: " + "; ".join(problems))


# ----------------------------------------------------------------------------- training
class FlowObjective:
    """Mean bits/dim of dequantised training images (uniform noise from the loop's generator)."""

    def __init__(self, model: Glow):
        self.model = model

    def __call__(self, batch, generator):
        (images,) = batch
        x = self.model.preprocess(to_float_pixels(images))
        noise = torch.rand(x.shape, generator=generator).to(x.device) / self.model.n_bins
        _, bpd = self.model(x, noise)
        loss = bpd.mean()
        return loss, {"bpd": bpd.detach().sum()}


@torch.no_grad()
def mean_bpd(model: Glow, images: torch.Tensor, batch_size: int, device, seed: int | None = 0) -> float:
    """Mean bits/dim over uint8 `images`; with dequantisation noise from `seed` (None: no noise)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = model.preprocess(to_float_pixels(images[start : start + batch_size].to(device)))
        noise = None
        if generator is not None:
            noise = torch.rand(x.shape, generator=generator).to(device) / model.n_bins
        total += model(x, noise)[1].sum().item()
    return total / len(images)


def train_flow(
    dataset_path,
    settings: dict,
    seed: int,
    model_path,
    metrics_path,
    log_path,
    state_path,
    *,
    device: str = "auto",
    eval_batch_size: int = 256,
) -> dict:
    """Train a Glow with the `flow` settings (architecture, epochs, batch size, ActNorm initialisation,
    optimizer) on the training split; write checkpoint, metrics and log."""
    data = prepare_training(dataset_path, device, seed + 1)
    device, generator, train_x, test_x = data.device, data.generator, data.train_x, data.test_x
    model = build_glow(settings, seed).to(device)
    run = TrainingRun(
        Path(state_path), Path(log_path), run_settings("flow", settings, seed, data.dataset_sha256)
    )
    if run.load_state() is None:  # no state to resume: data-dependent ActNorm initialisation on a fixed batch
        init = train_x[: settings["init_images"]]
        model.train()
        with torch.no_grad():
            x = model.preprocess(to_float_pixels(init))
            model(x, torch.rand(x.shape, generator=generator).to(device) / model.n_bins)
    model.mark_initialized()
    adamax = settings["optimizer"]
    optimizer = torch.optim.Adamax(model.parameters(), lr=adamax["lr"])
    schedule = {"name": "constant", "warmup_epochs": adamax["warmup_epochs"]}

    def evaluate():
        return {"test_bpd": mean_bpd(model, test_x, eval_batch_size, device)}

    params = sum(p.numel() for p in model.parameters())
    log.info(
        "training Glow (hidden %d, K %d, L %d, %d parameters) on %d images, %s",
        settings["hidden_channels"],
        settings["K"],
        settings["L"],
        params,
        len(train_x),
        device,
    )
    history = fit(
        model,
        FlowObjective(model),
        (train_x,),
        optimizer,
        FitSettings(
            settings["epochs"],
            settings["batch_size"],
            schedule,
            "flow",
            max_grad_norm=adamax["max_grad_norm"],
        ),
        generator,
        run,
        evaluate=evaluate,
    )
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(
            f"flow: non-finite weights after training ({', '.join(bad[:3])}); checkpoint not written"
        )
    metrics = {
        "source": "train",
        "test_bpd": history[-1]["test_bpd"],
        "train_bpd_last_epoch": history[-1]["train_bpd"],
        "test_bpd_per_epoch": [r["test_bpd"] for r in history],
        "top_latent_shape": list(model.top_shape),
    }
    return finish_training(
        "flow",
        model,
        run,
        device,
        len(train_x),
        model_path,
        metrics_path,
        metrics,
        {"test_bpd": metrics["test_bpd"], "seed": seed},
    )


def import_published_flow(
    checkpoint,
    hparams,
    dataset_path,
    model_path,
    metrics_path,
    *,
    device: str = "auto",
    eval_batch_size: int = 256,
) -> dict:
    """Convert the published checkpoint into this pipeline's format; report its test bits/dim here."""
    device = resolve_device(device)
    model = load_published_glow(checkpoint, hparams).to(device)
    test = read_split(dataset_path, "test")
    bpd = mean_bpd(model, torch.from_numpy(test.images), eval_batch_size, device)
    if not np.isfinite(bpd):
        raise CheckpointError(
            f"{checkpoint}: the flow gives {bpd} bits/dim on the test split of {dataset_path}; "
            f"refusing a flow that cannot give finite latents"
        )
    metrics = {
        "source": "pretrained",
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": file_sha256(checkpoint),
        "test_bpd": bpd,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": model.arch,
        "top_latent_shape": list(model.top_shape),
        "device": str(device),
    }
    save_checkpoint(model_path, "flow", model, {"test_bpd": bpd, "imported_from": str(checkpoint)})
    write_json(metrics_path, metrics)
    return metrics


def load_flow(path, device="cpu") -> Glow:
    model, _ = load_checkpoint(path, "flow", map_location=device)
    model.mark_initialized()
    return model


# ----------------------------------------------------------------------------- latents
@torch.inference_mode()
def _latent_batches(model: Glow, batches, device):
    for pixels01 in batches:
        x = model.preprocess(torch.as_tensor(pixels01).to(device).float())
        z, bpd = model(x)
        yield z.float().cpu().numpy(), bpd.float().cpu().numpy()


def latents_of(model: Glow, pixels01: np.ndarray, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
    """(top latents, bits/dim) of images in memory, computed exactly as for the latents files."""
    batches = (pixels01[s : s + batch_size] for s in range(0, len(pixels01), batch_size))
    z, bpd = zip(*_latent_batches(model, batches, device))
    return np.concatenate(z), np.concatenate(bpd)


def _write_latents(out_path, model: Glow, n: int, batches, device, arrays: dict, attrs: dict) -> dict:
    """The latents file (`latent_files.write_latents`) of `batches` of pixels through `model`."""
    return write_latents(out_path, model.top_shape, n, _latent_batches(model, batches, device), arrays, attrs)


def clean_latents(
    dataset_path,
    flow_path,
    split: str,
    out_path,
    *,
    images: int | None,
    seed: int,
    device: str = "auto",
    batch_size: int = 256,
) -> dict:
    """Latents of the clean images that the attacks use (`attacks.attacked_images`), so they line up."""
    device = resolve_device(device)
    model = load_flow(flow_path, device)
    data, index = attacked_images(dataset_path, split, images, seed)
    batches = (
        data.images[s : s + batch_size].astype(np.float32) / 255.0 for s in range(0, len(index), batch_size)
    )
    attrs = {"kind": "clean", "source": str(dataset_path), "split": split, **provenance_attrs(flow=flow_path)}
    return _write_latents(
        out_path, model, len(index), batches, device, {"index": index, "label": data.labels}, attrs
    )


def attack_latents(
    attack_path, flow_path, out_path, *, data=None, device: str = "auto", batch_size: int = 256
) -> dict:
    """Latents of the adversarials of one attack file (checked against the dataset file `data`, where given:
    positions, labels, norms)."""
    device = resolve_device(device)
    model = load_flow(flow_path, device)
    require = ("index", "label", "success", "pred_clean", "pred_adv", "linf")
    meta = read_attack_file(
        attack_path, require=require + (("adv", "l2") if data is not None else ()), data=data
    )
    a = meta.attrs
    attrs = {
        "kind": "attack",
        "source": str(attack_path),
        "split": a.get("split", ""),
        "attack": a["attack"],
        "epsilon": float(a["epsilon"]),
        **provenance_attrs(flow=flow_path),
    }
    arrays = meta.arrays(("index", "label", "success", "pred_clean", "pred_adv", "linf"))
    return _write_latents(
        out_path,
        model,
        len(meta),
        iter_adversarial_batches(attack_path, batch_size),
        device,
        arrays,
        attrs,
    )
