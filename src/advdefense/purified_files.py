"""Purified files: a purifier's output for one attack file (or a clean split). Its writer and its reader, in one
place, without torch (the purification stage hands the writer numpy batches).

Layout (`results/purified/<run>/<purifier>/<attack>/eps<eps>/<split>.h5`, or `.../clean/<split>.h5`)::

    purified       float32 N x 3 x 32 x 32  the purifier's output (uncompressed: float pixels barely compress)
    pred_purified  int64 N                  the classifier's prediction on it
    index          int64 N                  position of each image in the split
    label          int64 N                  true class
    pred_clean     int64 N                  the classifier's prediction on the clean image
    pred_adv       int64 N                  kind `attack` only: its prediction on the adversarial
    success        bool  N                  kind `attack` only: the attack fooled it (pred_adv != label)
    attrs: format, kind (attack | clean), split, source, purifier, provenance of its models; an attack's
           attack, epsilon, seconds
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .errors import PipelineFileError
from .h5io import open_pipeline_file

PURIFIED_FORMAT = "advdefense-purified-v2"  # v2: attrs name the purifier (issue 24)
KINDS = ("attack", "clean")
SOURCE_DATASETS = {
    "attack": ("index", "label", "pred_clean", "pred_adv", "success"),
    "clean": ("index", "label", "pred_clean"),
}


class PurifiedFileWriter:
    """Writes a purified file into an open (temporary) HDF5 file `f`: the source's arrays (`source`: those of
    SOURCE_DATASETS[kind]) up front, each batch of purified images and predictions where it falls, the attributes
    last (`finish`)."""

    def __init__(self, f: h5py.File, kind: str, source: dict[str, np.ndarray]):
        if kind not in KINDS:
            raise ValueError(f"purified file kind {kind!r} (one of {', '.join(KINDS)})")
        names = SOURCE_DATASETS[kind]
        if sorted(source) != sorted(names):
            raise ValueError(
                f"a purified file of kind {kind} holds {', '.join(names)}, given {', '.join(source)}"
            )
        self.f, self.kind, self.n = f, kind, len(source["index"])
        for name in names:
            f.create_dataset(name, data=source[name])
        # uncompressed like the attack files' images: float32 pixels barely compress, and gzip would be
        # slower than the purifier + classifier themselves
        self.purified = f.create_dataset(
            "purified", (self.n, 3, 32, 32), np.float32, chunks=(min(self.n, 128), 3, 32, 32)
        )
        self.pred = f.create_dataset("pred_purified", (self.n,), np.int64)
        self.written = 0

    def write(self, start: int, purified: np.ndarray, pred_purified: np.ndarray) -> None:
        """One batch's purified images and the classifier's predictions on them, at images [start, start + B)."""
        if start != self.written:
            raise ValueError(f"purified batch at image {start}, expected {self.written}")
        end = start + len(purified)
        self.purified[start:end] = purified
        self.pred[start:end] = pred_purified
        self.written = end

    def finish(self, attrs: dict) -> None:
        """The file's attributes (`format` and `kind` first); every image must have been written."""
        if self.written != self.n:
            raise RuntimeError(f"purified {self.written} of {self.n} images")
        self.f.attrs.update({"format": PURIFIED_FORMAT, "kind": self.kind, **attrs})


@dataclass(frozen=True, eq=False)
class PurifiedArrays:
    """A purified file without its images (the tables and figures need labels and predictions only), checked:
    every array of one length, and for an attack's file `success` exactly where pred_adv != label."""

    path: Path
    attrs: dict
    index: np.ndarray
    label: np.ndarray
    pred_clean: np.ndarray
    pred_purified: np.ndarray
    pred_adv: np.ndarray | None = None
    success: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return str(self.attrs["kind"])

    @property
    def purifier(self) -> str:
        return str(self.attrs["purifier"])

    @property
    def right(self) -> np.ndarray:
        """Per image: the classifier is right on the purified image."""
        return self.pred_purified == self.label

    def __len__(self) -> int:
        return len(self.index)


def read_purified(path) -> PurifiedArrays:
    """A purified file's arrays but its images, and its attributes, after checking it is one and whole."""
    path = Path(path)

    def names(attrs) -> tuple[str, ...]:
        kind = attrs.get("kind")
        if kind not in KINDS:
            raise PipelineFileError(
                f"{path}: purified file of unknown kind {kind!r} (one of {', '.join(KINDS)})"
            )
        return SOURCE_DATASETS[kind] + ("pred_purified", "purified")

    with open_pipeline_file(path, PURIFIED_FORMAT, "purified", names) as f:
        attrs = dict(f.attrs)
        arrays = {k: f[k][()] for k in names(attrs) if k != "purified"}  # the images stay on disk
    p = PurifiedArrays(path, attrs, **arrays)
    if p.success is not None:
        wrong = np.asarray(p.success, bool) != (p.pred_adv != p.label)
        if wrong.any():
            raise PipelineFileError(
                f"{path}: 'success' disagrees with pred_adv != label for {int(wrong.sum())} of {len(wrong)} images"
            )
    return p
