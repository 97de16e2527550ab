"""The latents file: the flow's top latent and bits/dim of the images one job used (the clean images the attacks
use, or one attack file's adversarials), results/latents/<run>/{clean,<attack>/eps<eps>}/<split>.h5. Its writer
and its reader, in one place.

Layout: /z float32 N x C x H x W (gzip), /bpd float32 N, and the arrays of the images' source (index, label; an
attack's success, pred_clean, pred_adv, linf); attributes: format, kind (clean | attack), source, split, the
attack and epsilon of an attack's, provenance, seconds, images_per_s.

Torch-free: the flow stage hands it numpy batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PipelineFileError
from .h5io import atomic_h5, open_pipeline_file
from .progress import ProgressLog

log = logging.getLogger(__name__)
LATENT_FORMAT = "advdefense-latents-v1"


class NonFiniteLatents(RuntimeError):
    """The flow gave a NaN or inf latent or bits/dim: nothing is written."""


def write_latents(
    out_path, shape: tuple[int, int, int], n: int, batches: Iterable, arrays: dict, attrs: dict
) -> dict:
    """Write the latents file of `n` images from `batches` of (z: B x C x H x W, bpd: B) numpy arrays (`shape`:
    C x H x W), with the source's `arrays` and `attrs`; it appears under `out_path` only when complete. Returns
    {n, mean_bpd, seconds}."""
    c, h, w = shape
    t0 = time.perf_counter()
    with atomic_h5(out_path) as f:
        z_ds = f.create_dataset(
            "z",
            (n, c, h, w),
            np.float32,
            chunks=(min(n, 256), c, h, w),
            compression="gzip",
            compression_opts=4,
        )
        bpd_ds = f.create_dataset("bpd", (n,), np.float32)
        for name, values in arrays.items():
            f.create_dataset(name, data=values)
        start = 0
        progress = ProgressLog(log, f"latents {out_path}", n)
        for z, bpd in batches:
            if not (np.isfinite(z).all() and np.isfinite(bpd).all()):
                raise NonFiniteLatents(
                    f"{out_path}: the flow produced non-finite latents for images {start}.."
                )
            z_ds[start : start + len(z)] = z
            bpd_ds[start : start + len(z)] = bpd
            start += len(z)
            progress.update(start)
        if start != n:
            raise RuntimeError(f"{out_path}: wrote {start} latents for {n} images")
        seconds = time.perf_counter() - t0
        f.attrs.update({"format": LATENT_FORMAT, "seconds": seconds, "images_per_s": n / seconds, **attrs})
        mean_bpd = float(bpd_ds[()].mean())
    log.info(
        "%s: %d latents (%dx%dx%d), mean %.3f bits/dim, %.0f images/s",
        out_path,
        n,
        c,
        h,
        w,
        mean_bpd,
        n / seconds,
    )
    return {"n": n, "mean_bpd": mean_bpd, "seconds": seconds}


ATTACK_ARRAYS = ("success", "pred_clean", "pred_adv", "linf")  # what a latents file of an attack carries more


@dataclass(frozen=True, eq=False)
class LatentArrays:
    """A latents file, checked: the flow's top latent `z` (N x C x H x W) and bits/dim `bpd` of its images, their
    positions and labels, and for an attack's adversarials what the attack file says of each (`ATTACK_ARRAYS`)."""

    path: Path
    attrs: dict
    z: np.ndarray
    bpd: np.ndarray
    index: np.ndarray
    label: np.ndarray
    success: np.ndarray | None = None
    pred_clean: np.ndarray | None = None
    pred_adv: np.ndarray | None = None
    linf: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return str(self.attrs.get("kind", ""))

    def field(self, name: str) -> np.ndarray:
        """What a detector reads: `z` (latent detectors) or `bpd` as an N x 1 float32 column (the likelihood
        detector)."""
        if name == "z":
            return self.z
        if name == "bpd":
            return self.bpd.astype(np.float32)[:, None]
        raise ValueError(f"latents field {name!r} (z or bpd)")

    def __len__(self) -> int:
        return len(self.index)


def read_latents(path: str | Path) -> LatentArrays:
    """A latents file's arrays and attributes, after checking it is one, whole and of one length; an attack's must
    carry `ATTACK_ARRAYS` (files of older versions lack some: made again when deleted)."""
    path = Path(path)

    def names(attrs) -> tuple[str, ...]:
        return ("z", "bpd", "index", "label") + (ATTACK_ARRAYS if attrs.get("kind") == "attack" else ())

    with open_pipeline_file(path, LATENT_FORMAT, "latent", names) as f:
        attrs = dict(f.attrs)
        arrays = {k: f[k][()] for k in names(attrs)}
    if arrays["z"].ndim != 4:
        raise PipelineFileError(f"{path}: 'z' has shape {arrays['z'].shape}, not N x C x H x W")
    return LatentArrays(path, attrs, **arrays)
