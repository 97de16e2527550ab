"""Dataset stage: CIFAR-10 or CIFAR-100 (download, or a local directory in the official python layout, read
by `sources`) or synthetic data, into one HDF5 file.

HDF5 layout (`results/data/<name>.h5`)::

    /train/images  uint8  N x 3 x 32 x 32
    /train/labels  int64  N
    /train/source_index int64 N   (index of each image in the source split)
    /test/...      the same for the test split
    /calibration/... the same for the calibration split: clean images held out of the training pool
                   (`dataset.calibration_size`), which no model trains on; detector thresholds come from it
    attrs: class_names (list of str), source, provenance (JSON), format

Pixels stay uint8 in the file; the models take float pixels in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .h5io import atomic_h5, open_h5, provenance_attrs
from .plan.decisions import SOURCES
from .sources import (
    CIFAR10_CLASSES,
    CIFAR100_LABELS,
    META_FILE,
    TEST_BATCH,
    TRAIN_BATCHES,
    DataError,
    _class_names,
    _read_pickle,
    check_labels_setting,
    cifar_dir_layout,
)

SPLITS = ("train", "test")  # the splits that are attacked
ALL_SPLITS = ("train", "test", "calibration")
DATASET_FORMAT = "advdefense-dataset-v1"


@dataclass
class Split:
    images: np.ndarray  # uint8, N x 3 x 32 x 32
    labels: np.ndarray  # int64, N
    source_index: np.ndarray = None  # int64, N: position in the source split

    def __post_init__(self):
        self.images = np.ascontiguousarray(self.images, dtype=np.uint8)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.source_index is None:
            self.source_index = np.arange(len(self.labels), dtype=np.int64)
        if self.images.ndim != 4 or self.images.shape[1:] != (3, 32, 32):
            raise DataError(f"images must be N x 3 x 32 x 32, got {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices], self.source_index[indices])


@dataclass
class Dataset:
    train: Split
    test: Split
    class_names: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    calibration: Split | None = None  # held out of the training pool; None in files without one

    def split(self, name: str) -> Split:
        if name not in ALL_SPLITS:
            raise DataError(f"unknown split {name!r} (use one of {ALL_SPLITS})")
        if getattr(self, name) is None:
            raise DataError(f"this dataset file has no {name} split (set dataset.calibration_size > 0)")
        return getattr(self, name)


# --------------------------------------------------------------------------- local batches
def _read_batch(path: Path, label_key: str = "labels", classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    obj = _read_pickle(path)
    for key in ("data", label_key):
        if key not in obj:
            hint = (
                " (is dataset.labels right for this directory?)"
                if key == label_key and label_key != "labels"
                else ""
            )
            raise DataError(f"{path}: missing key {key!r} (found {sorted(obj)}){hint}")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' must be uint8 N x 3072, found {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(
            f"{path}: {label_key} must lie in 0..{classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar_batches_dir(path: str | Path, labels: str = "fine") -> Dataset:
    """Read a local CIFAR directory in the official python-pickle layout: cifar-10-batches-py, or
    cifar-100-python with its `labels` ('fine': 100 classes, 'coarse': 20). No checksums: small or
    custom copies are fine."""
    path = Path(path)
    if cifar_dir_layout(path) == "cifar100":
        return _load_cifar100_dir(path, labels)
    parts = [_read_batch(path / name) for name in TRAIN_BATCHES]
    train = Split(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = Split(*_read_batch(path / TEST_BATCH))
    meta = _read_pickle(path / META_FILE)
    names = _class_names(meta.get("label_names", ()), path / META_FILE, "label_names")
    if len(names) != 10:
        raise DataError(f"{path / META_FILE}: 'label_names' must list 10 classes, found {names!r}")
    return Dataset(train, test, names, {"source": "local", "path": str(path.resolve())})


def _load_cifar100_dir(path: Path, labels: str) -> Dataset:
    if labels not in CIFAR100_LABELS:
        raise ConfigError(f"dataset.labels: {labels!r} is not one of {sorted(CIFAR100_LABELS)}")
    label_key, names_key, classes = CIFAR100_LABELS[labels]
    train = Split(*_read_batch(path / "train", label_key, classes))
    test = Split(*_read_batch(path / "test", label_key, classes))
    meta = _read_pickle(path / "meta")
    if names_key not in meta:
        raise DataError(f"{path / 'meta'}: missing key {names_key!r} (found {sorted(meta)})")
    names = _class_names(meta[names_key], path / "meta", names_key)
    if len(names) != classes:
        raise DataError(f"{path / 'meta'}: {names_key!r} must list {classes} classes, found {len(names)}")
    return Dataset(
        train,
        test,
        names,
        {"source": "local", "layout": "cifar-100-python", "labels": labels, "path": str(path.resolve())},
    )


# --------------------------------------------------------------------------- download
def download_cifar10(root: str | Path) -> Dataset:
    """torchvision's CIFAR10 download (MD5-checked archive and batches) into `root`."""
    from torchvision.datasets import CIFAR10

    root = Path(root)
    splits = {}
    for name, train in (("train", True), ("test", False)):
        try:
            ds = CIFAR10(root=str(root), train=train, download=True)
        except Exception as exc:
            raise DataError(
                f"dataset.root: could not download or verify CIFAR-10 into {root} ({exc}). "
                "Without internet, use dataset.source: local with dataset.path pointing at an "
                "extracted cifar-10-batches-py directory."
            ) from exc
        splits[name] = Split(np.asarray(ds.data).transpose(0, 3, 1, 2), np.asarray(ds.targets))
    return Dataset(
        splits["train"],
        splits["test"],
        tuple(CIFAR10_CLASSES),
        {"source": "cifar10", "root": str(root.resolve()), "checksums": "verified by torchvision"},
    )


def download_cifar100(root: str | Path, labels: str = "fine") -> Dataset:
    """torchvision's CIFAR100 download (MD5-checked archive and files) into `root`, read back with the
    restricted reader so that `labels` can be fine (100 classes) or coarse (20)."""
    from torchvision.datasets import CIFAR100

    root = Path(root)
    for train in (True, False):
        try:
            CIFAR100(root=str(root), train=train, download=True)
        except Exception as exc:
            raise DataError(
                f"dataset.root: could not download or verify CIFAR-100 into {root} ({exc}). "
                "Without internet, use dataset.source: local with dataset.path pointing at an "
                "extracted cifar-100-python directory."
            ) from exc
    ds = _load_cifar100_dir(root / "cifar-100-python", labels)
    return replace(
        ds,
        provenance={
            "source": "cifar100",
            "labels": labels,
            "root": str(root.resolve()),
            "checksums": "verified by torchvision",
        },
    )


# --------------------------------------------------------------------------- synthetic
def make_synthetic(train_images: int, test_images: int, seed: int = 0, noise: float = 0.15) -> Dataset:
    """A deterministic, learnable 10-class 32x32 RGB dataset.

    Class k is a sinusoidal grating with one of five spatial frequencies and one of two
    colour pairs (10 combinations). Each image draws a random orientation, phase, frequency
    jitter, contrast, background, a random position and size of a soft circular window, and
    Gaussian pixel noise. Class identity is invariant to flips and crops, so the standard
    augmentation keeps the classes apart; a small CNN learns the task within a few epochs.
    """
    rng = np.random.default_rng(seed)
    total = train_images + test_images
    labels = np.arange(total) % 10
    rng.shuffle(labels)
    orientation = rng.uniform(0, np.pi, total)
    palettes = np.array([[[0.9, 0.2, 0.2], [0.1, 0.4, 0.9]], [[0.2, 0.8, 0.2], [0.8, 0.2, 0.8]]])
    colour_a = palettes[labels // 5, 0]
    colour_b = palettes[labels // 5, 1]

    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    freq = 0.3 + 0.25 * (labels % 5) + rng.uniform(-0.04, 0.04, total)  # radians per pixel
    phase = rng.uniform(0, 2 * np.pi, total)
    proj = np.cos(orientation)[:, None, None] * xx + np.sin(orientation)[:, None, None] * yy
    wave = 0.5 + 0.5 * np.sin(freq[:, None, None] * proj + phase[:, None, None])  # N x 32 x 32
    cy, cx = rng.uniform(8, 24, total), rng.uniform(8, 24, total)
    radius = rng.uniform(9, 16, total)
    dist2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    window = 1.0 / (1.0 + np.exp((np.sqrt(dist2) - radius[:, None, None]) / 1.5))
    contrast = rng.uniform(0.6, 1.0, total)[:, None, None, None]
    background = rng.uniform(0.2, 0.6, (total, 3))[:, :, None, None]
    pattern = colour_a[:, :, None, None] * wave[:, None] + colour_b[:, :, None, None] * (1 - wave[:, None])
    img = background + window[:, None] * contrast * (pattern - background)
    img = img + rng.normal(0, noise, img.shape)
    images = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    train = Split(images[:train_images], labels[:train_images])
    test = Split(images[train_images:], labels[train_images:])
    names = tuple(f"class{k}" for k in range(10))
    return Dataset(train, test, names, {"source": "synthetic", "seed": seed, "noise": noise})


# --------------------------------------------------------------------------- subsets / dispatch
def take_subset(ds: Dataset, train_size: int | None, test_size: int | None, seed: int) -> Dataset:
    """Seeded random subsets (kept in source order). Asking for more than there is is an error."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, size in (("train", train_size), ("test", test_size)):
        split = ds.split(name)
        if size is None or size == len(split):
            splits[name] = split
            continue
        if size > len(split):
            raise ConfigError(
                f"dataset.{name}_size: asked for {size} images but the {name} split has only {len(split)}"
            )
        splits[name] = split.take(np.sort(rng.choice(len(split), size=size, replace=False)))
    prov = dict(ds.provenance, train_size=train_size, test_size=test_size, subset_seed=seed)
    return replace(ds, train=splits["train"], test=splits["test"], provenance=prov)


def hold_out_calibration(ds: Dataset, size: int, seed: int) -> Dataset:
    """Move a seeded random `size` images of the training pool into the calibration split (both kept in
    source order). No model trains on them; detector thresholds and score normalisation come from them."""
    if size == 0:
        return ds
    if size >= len(ds.train):
        raise ConfigError(
            f"dataset.calibration_size: {size} calibration images leave nothing to train on "
            f"(the training pool has {len(ds.train)})"
        )
    rng = np.random.default_rng([seed, 0xCA1])
    held = np.zeros(len(ds.train), bool)
    held[rng.choice(len(ds.train), size=size, replace=False)] = True
    prov = dict(ds.provenance, calibration_size=size)
    return replace(
        ds,
        train=ds.train.take(np.flatnonzero(~held)),
        calibration=ds.train.take(np.flatnonzero(held)),
        provenance=prov,
    )


def build_dataset(data_cfg: dict, seed: int) -> Dataset:
    """Dispatch on `dataset.source` and apply the optional subsets."""
    source = data_cfg["source"]
    if source in SOURCES and (source != "local" or data_cfg.get("path")):
        check_labels_setting(data_cfg)
    if source == "cifar10":
        ds = download_cifar10(data_cfg["root"])
    elif source == "cifar100":
        ds = download_cifar100(data_cfg["root"], data_cfg.get("labels", "fine"))
    elif source == "local":
        if not data_cfg.get("path"):
            raise ConfigError("dataset.path: required when dataset.source is 'local'")
        ds = load_cifar_batches_dir(data_cfg["path"], data_cfg.get("labels", "fine"))
    elif source == "synthetic":
        syn = data_cfg.get("synthetic", {})
        ds = make_synthetic(
            syn.get("train_images", 2000), syn.get("test_images", 500), seed, syn.get("noise", 0.15)
        )
    else:
        raise ConfigError(f"dataset.source: unknown source {source!r} (use {', '.join(SOURCES)})")
    ds = take_subset(ds, data_cfg.get("train_size"), data_cfg.get("test_size"), seed)
    return hold_out_calibration(ds, data_cfg.get("calibration_size") or 0, seed)


# --------------------------------------------------------------------------- HDF5
def write_dataset_h5(ds: Dataset, path: str | Path) -> None:
    with atomic_h5(path) as f:
        for name in ALL_SPLITS:
            split = getattr(ds, name)
            if split is None:
                continue
            g = f.create_group(name)
            g.create_dataset(
                "images",
                data=split.images,
                chunks=(min(len(split), 256), 3, 32, 32),
                compression="gzip",
                compression_opts=4,
            )
            g.create_dataset("labels", data=split.labels)
            g.create_dataset("source_index", data=split.source_index)
        f.attrs["format"] = DATASET_FORMAT
        f.attrs["class_names"] = list(ds.class_names)
        f.attrs["source"] = ds.provenance.get("source", "unknown")
        f.attrs["provenance"] = json.dumps(ds.provenance, sort_keys=True)
        f.attrs.update(provenance_attrs())


def split_size(path: str | Path, split: str) -> int:
    """How many images `split` of a dataset file holds (its labels only are read)."""
    return len(_split_labels(Path(path), split))


def split_labels(path: str | Path, split: str) -> np.ndarray:
    """The labels of `split` of a dataset file (its images are not read)."""
    return _split_labels(Path(path), split)


def _split_labels(path: Path, split: str) -> np.ndarray:
    with open_h5(path, "dataset") as f:
        _check_format(f, path)
        g = _split_group(f, path, split)
        return g["labels"][()]


def _check_format(f, path: Path) -> None:
    if f.attrs.get("format") != DATASET_FORMAT:
        raise DataError(
            f"{path}: not a dataset file of this pipeline (format attribute {f.attrs.get('format')!r})"
        )


def _split_group(f, path: Path, split: str):
    if split not in ALL_SPLITS:
        raise DataError(f"unknown split {split!r} (use one of {ALL_SPLITS})")
    if split not in f:
        if split == "calibration":
            raise DataError(
                f"{path}: this dataset file has no calibration split (set dataset.calibration_size > 0)"
            )
        raise DataError(f"{path}: missing /{split}/images or /{split}/labels")
    g = f[split]
    if any(k not in g for k in ("images", "labels")):
        raise DataError(f"{path}: missing /{split}/images or /{split}/labels")
    if g["images"].ndim != 4 or g["images"].shape[1:] != (3, 32, 32) or len(g["images"]) != len(g["labels"]):
        raise DataError(
            f"{path}: /{split}: images must be N x 3 x 32 x 32 with one label each, found "
            f"{g['images'].shape} images and {g['labels'].shape} labels"
        )
    if g["images"].dtype != np.uint8:  # a cast would turn float pixels in [0, 1] into 0 and 1
        raise DataError(
            f"{path}: /{split}/images are {g['images'].dtype}, but a dataset file holds uint8 pixels 0..255 "
            f"(write it with write_dataset_h5, or scale and round the pixels to uint8)"
        )
    if g["labels"].dtype.kind not in "iu":
        raise DataError(f"{path}: /{split}/labels are {g['labels'].dtype}, not integers")
    classes = len(f.attrs.get("class_names", ()))
    labels = g["labels"][()]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = int(((labels < 0) | (labels >= classes)).sum())
        raise DataError(
            f"{path}: /{split}/labels: {bad} label(s) outside 0..{classes - 1} (min {int(labels.min())}, max "
            f"{int(labels.max())}) for the file's {classes} class names"
        )
    return g


def class_names(path: str | Path) -> tuple[str, ...]:
    """The class names of a dataset file (its attributes only are read)."""
    path = Path(path)
    with open_h5(path, "dataset") as f:
        _check_format(f, path)
        return tuple(str(n) for n in f.attrs["class_names"])


def read_split(path: str | Path, split: str, index: np.ndarray | None = None, block: int = 1024) -> Split:
    """One split of a dataset file, or only its images at positions `index` (increasing), in that order.
    The images are read `block` at a time, so memory holds what is returned and one block, however large
    the split: a job that uses 2000 of 48 000 training images never holds the other 46 000."""
    path = Path(path)
    with open_h5(path, "dataset") as f:
        _check_format(f, path)
        g = _split_group(f, path, split)
        n = len(g["labels"])
        labels = g["labels"][()]
        source = g["source_index"][()] if "source_index" in g else np.arange(n, dtype=np.int64)
        if index is None:
            return Split(g["images"][()], labels, source)
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= n or np.any(np.diff(index) <= 0)):
            raise DataError(f"{path}: /{split}: image positions must be increasing and within 0..{n - 1}")
        images = np.empty((len(index), 3, 32, 32), np.uint8)
        images_ds = g["images"]
        for lo in range(0, n, block):
            a, b = np.searchsorted(index, [lo, lo + block])
            if a < b:
                images[a:b] = images_ds[lo : lo + block][index[a:b] - lo]
        return Split(images, labels[index], source[index])


class DatasetFile:
    """A dataset file whose splits are read when first asked for, each once: a job that needs only the test
    split (or a few of its images, `read_split`) does not read the 48 000 training images."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._splits: dict[str, Split] = {}

    def split(self, name: str) -> Split:
        if name not in self._splits:
            self._splits[name] = read_split(self.path, name)
        return self._splits[name]

    def loaded(self, name: str) -> Split | None:
        """The split if it has been read already (None: not yet)."""
        return self._splits.get(name)


def read_dataset_h5(path: str | Path) -> Dataset:
    path = Path(path)
    with open_h5(path, "dataset") as f:
        if f.attrs.get("format") != DATASET_FORMAT:
            raise DataError(
                f"{path}: not a dataset file of this pipeline (format attribute {f.attrs.get('format')!r})"
            )
        splits = {"calibration": None}
        for name in ALL_SPLITS:
            if name == "calibration" and name not in f:
                continue
            if name not in f or any(k not in f[name] for k in ("images", "labels")):
                raise DataError(f"{path}: missing /{name}/images or /{name}/labels")
            g = f[name]
            index = g["source_index"][()] if "source_index" in g else None
            try:
                splits[name] = Split(g["images"][()], g["labels"][()], index)
            except DataError as exc:
                raise DataError(f"{path}: /{name}: {exc}") from None
        names = tuple(str(n) for n in f.attrs["class_names"])
        prov = json.loads(f.attrs.get("provenance", "{}"))
    return Dataset(splits["train"], splits["test"], names, prov, splits["calibration"])


# ----------------------------------------------------------------------------- the images every stage uses
def attacked_images(dataset_path, split: str, images: int | None, seed: int) -> tuple[Split, np.ndarray]:
    """The images of `split` that every attack uses (`attack_defaults.images.<split>` of them, seeded) and
    their positions in the split: (their rows of the split, aligned with the positions). Attacks, clean
    latents and clean purification all take their images from here, so they line up. Only those images
    are read from the dataset file."""
    index = attack_indices(split_size(dataset_path, split), images, seed, f"attack_defaults.images.{split}")
    return read_split(dataset_path, split, index), index


def attack_indices(split_size: int, n: int | None, seed: int, key: str) -> np.ndarray:
    """The images of a split that every attack uses: a seeded random subset, sorted.

    The same seed gives the same images for every attack and epsilon, so clean and
    attacked sets line up across methods (the detector stage relies on it)."""
    if n is None or n == split_size:
        return np.arange(split_size, dtype=np.int64)
    if n > split_size:
        raise ConfigError(f"{key}: asked for {n} images but the split has only {split_size}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(split_size, size=n, replace=False)).astype(np.int64)
