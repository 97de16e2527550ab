"""The corrupted-images file: one corruption of CIFAR-10-C at every configured severity, for the test images the
attacks use (results/corrupted/<run>/<corruption>/test.h5). Its writer, its reader and the reader's checks.

Layout: /images uint8 S x N x 3 x 32 x 32 (severity-major, the dataset's image layout), /index int64 N (positions
in the test split, the attack files' `index`), /label int64 N; attributes: format, corruption, severities (S),
seed, parameters (JSON of the published parameters of those severities), source (the dataset file).

Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corruptions import IDENTITY, PARAMETERS, SEVERITIES, corrupt_images
from .errors import PipelineFileError
from .h5io import atomic_h5, open_h5

CORRUPTED_FORMAT = "advdefense-corrupted-v1"


@dataclass(frozen=True)
class CorruptedFile:
    """A corrupted-images file as read back, checked."""

    path: Path
    corruption: str
    severities: tuple[int, ...]
    index: np.ndarray  # N, positions in the test split
    label: np.ndarray  # N
    seed: int

    def images(self, severity: int, rows: np.ndarray | None = None) -> np.ndarray:
        """N x 3 x 32 x 32 uint8 images at `severity` (only `rows` of them, positions in this file, if given)."""
        if severity not in self.severities:
            raise PipelineFileError(f"{self.path}: no severity {severity} (has {list(self.severities)})")
        s = self.severities.index(severity)
        with open_h5(self.path, "corrupted-images") as f:
            images = f["images"][s]
        return images if rows is None else images[rows]

    def present(self, index: np.ndarray) -> np.ndarray:
        """Which of the test images at positions `index` the file holds (bool per position)."""
        return np.isin(index, self.index)

    def rows_of(self, index: np.ndarray) -> np.ndarray:
        """This file's rows of the test images at positions `index` (each must be in the file)."""
        where = {int(i): r for r, i in enumerate(self.index)}
        missing = [int(i) for i in index if int(i) not in where]
        if missing:
            raise PipelineFileError(
                f"{self.path}: {len(missing)} of the asked test images are not in the file (e.g. position "
                f"{missing[0]}): it was made for other images (attack_defaults.images.test, seed)"
            )
        return np.array([where[int(i)] for i in index], dtype=np.int64)


def write_corrupted_file(
    path,
    images: np.ndarray,
    labels: np.ndarray,
    index: np.ndarray,
    corruption: str,
    severities,
    seed: int,
    source,
) -> None:
    """Corrupt the N x 3 x 32 x 32 uint8 `images` (the test images at positions `index`) at every severity and
    write the file; it appears under `path` only when complete."""
    severities = [int(s) for s in severities]
    n = len(index)
    with atomic_h5(path) as f:
        f.create_dataset("index", data=np.asarray(index, dtype=np.int64))
        f.create_dataset("label", data=np.asarray(labels, dtype=np.int64))
        out = f.create_dataset(
            "images",
            (len(severities), n, 3, 32, 32),
            np.uint8,
            chunks=(1, min(n, 256), 3, 32, 32),
            compression="gzip",
        )
        for s, severity in enumerate(severities):
            out[s] = corrupt_images(images, corruption, severity, seed)
        parameters = {} if corruption == IDENTITY else {s: PARAMETERS[corruption][s - 1] for s in severities}
        f.attrs.update(
            {
                "format": CORRUPTED_FORMAT,
                "corruption": corruption,
                "severities": np.asarray(severities, dtype=np.int64),
                "seed": int(seed),
                "parameters": json.dumps(parameters),
                "source": str(source),
            }
        )


def read_corrupted_file(path, expect_corruption: str | None = None, labels_of=None) -> CorruptedFile:
    """The file's description after its checks: format, shapes, severities, and (with `labels_of`, a function
    from test positions to the dataset's labels) that its labels are the dataset's."""
    path = Path(path)
    with open_h5(path, "corrupted-images") as f:
        if f.attrs.get("format") != CORRUPTED_FORMAT:
            raise PipelineFileError(
                f"{path}: not a corrupted-images file of this pipeline (format {f.attrs.get('format')!r})"
            )
        for name in ("images", "index", "label"):
            if name not in f:
                raise PipelineFileError(f"{path}: missing /{name}")
        index, label = f["index"][()], f["label"][()]
        shape, dtype = f["images"].shape, f["images"].dtype
        corruption = str(f.attrs["corruption"])
        severities = tuple(int(s) for s in f.attrs["severities"])
        seed = int(f.attrs["seed"])
    n = len(index)
    if shape != (len(severities), n, 3, 32, 32) or dtype != np.uint8 or len(label) != n:
        raise PipelineFileError(
            f"{path}: /images is {shape} {dtype} for {len(severities)} severities and {n} images "
            f"({len(label)} labels); expected {(len(severities), n, 3, 32, 32)} uint8"
        )
    if len(set(severities)) != len(severities) or not set(severities) <= set(SEVERITIES):
        raise PipelineFileError(f"{path}: severities {list(severities)} are not distinct values of 1..5")
    if expect_corruption is not None and corruption != expect_corruption:
        raise PipelineFileError(f"{path}: holds corruption {corruption!r}, not {expect_corruption!r}")
    if labels_of is not None and not np.array_equal(labels_of(index), label):
        raise PipelineFileError(f"{path}: its labels are not the dataset's labels of its test images")
    return CorruptedFile(path, corruption, severities, index, label, seed)
