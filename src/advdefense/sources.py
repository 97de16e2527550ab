"""Data sources: the official CIFAR python layouts on disk, read safely, and the sizes of every source.

Without torch or HDF5 (numpy only): the configuration checks count a source's images through this module
before any job runs; the dataset stage (`data.py`) builds its HDF5 file from the same readers. CIFAR pickles
are read with a restricted unpickler that admits only what the official files hold.
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from .errors import ConfigError, PipelineFileError
from .plan.decisions import SOURCES

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
    from numpy._core.numeric import _frombuffer as _np_frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar
    from numpy.core.numeric import _frombuffer as _np_frombuffer

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"
SPLITS = ("train", "test")  # the splits a source has (calibration is held out of train)


class DataError(PipelineFileError):
    """A data file or directory is missing or malformed."""


# --------------------------------------------------------------------------- local batches
CIFAR100_FILES = ("train", "test", "meta")
CIFAR100_LABELS = {
    "fine": ("fine_labels", "fine_label_names", 100),
    "coarse": ("coarse_labels", "coarse_label_names", 20),
}


def cifar_dir_layout(path: str | Path, key: str = "dataset.path") -> str:
    """'cifar10' for a cifar-10-batches-py directory, 'cifar100' for a cifar-100-python one (by the
    files present); anything else is a ConfigError naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{key}: directory {path} does not exist")
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH, META_FILE) if not (path / n).is_file()]
    if all((path / n).is_file() for n in CIFAR100_FILES):
        if not missing:
            raise ConfigError(
                f"{key}: {path} holds both a cifar-10-batches-py layout (data_batch_1..5, test_batch, "
                f"batches.meta) and a cifar-100-python one (train, test, meta); point it at a directory "
                f"with one of them"
            )
        return "cifar100"
    if missing:
        raise ConfigError(
            f"{key}: {path} is neither a cifar-10-batches-py directory (missing {', '.join(missing)}) "
            f"nor a cifar-100-python one (train, test, meta)"
        )
    return "cifar10"


def check_cifar_batches_dir(path: str | Path, key: str = "dataset.path") -> Path:
    """Cheap structural check of a local CIFAR directory (either layout; existence of every file)."""
    cifar_dir_layout(path, key)
    return Path(path)


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what the official CIFAR pickles hold: dicts, lists, str/bytes, numbers and numpy
    arrays of numbers (rebuilt through numpy's array reconstructor and `_codecs.encode` for the
    latin-1 byte strings of Python 2 pickles). Any other global, an object dtype or another codec
    is refused, so a crafted batch file cannot run code."""

    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return _ARRAY_GLOBALS[(module, name)]
        if (module, name) == ("numpy", "dtype"):
            return self._dtype
        if (module, name) == ("_codecs", "encode"):
            return self._encode
        raise DataError(
            f"{self.path}: refused to load: the pickle asks for {module}.{name}, which the official "
            "CIFAR files never contain (it could run code)"
        )

    def _dtype(self, spec, *args):
        dtype = np.dtype(spec, *args)
        if dtype.hasobject:
            raise DataError(f"{self.path}: refused to load: the pickle holds an object array")
        return dtype

    def _encode(self, text, encoding="utf-8", errors="strict"):
        if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
            raise DataError(f"{self.path}: refused to load: the pickle asks for the {encoding!r} codec")
        return codecs.encode(text, encoding, errors)


_ARRAY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,  # numpy integers in a label list
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    # pickle protocol 5 (Python 3's default) rebuilds arrays from a buffer
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
}


def _read_pickle(path: Path) -> dict:
    """One CIFAR pickle through the restricted unpickler; any failure names the file."""
    try:
        with path.open("rb") as fh:
            obj = _CifarUnpickler(fh, path).load()
    except DataError:
        raise
    except Exception as exc:  # pickle raises many types on garbage
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def _class_names(names, path: Path, key: str) -> tuple[str, ...]:
    """Class names of a meta file as text: bytes (the official files hold str, copies written under Python 2
    or by other tools bytes) are decoded, anything else is an error naming the file."""
    out = []
    for name in names:
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                name = name.decode("latin-1")
        if not isinstance(name, str):
            raise DataError(
                f"{path}: {key!r} must list class names (text), found {type(name).__name__} {name!r}"
            )
        out.append(name)
    return tuple(out)


def check_labels_setting(data_cfg: dict) -> None:
    """`dataset.labels: coarse` exists only for CIFAR-100 (its 20 superclasses): anywhere else it would be
    silently ignored."""
    if data_cfg.get("labels", "fine") != "coarse":
        return
    source = data_cfg["source"]
    layout = cifar_dir_layout(data_cfg["path"]) if source == "local" else source
    if layout != "cifar100":
        what = f"{data_cfg['path']} is a CIFAR-10 directory" if source == "local" else f"source {source!r}"
        raise ConfigError(
            f"dataset.labels: coarse (the 20 superclasses) exists only for CIFAR-100, but {what}, "
            f"which has no coarse labels; use labels: fine or a cifar-100-python directory"
        )


CIFAR_SIZES = {"train": 50_000, "test": 10_000}  # CIFAR-10 and CIFAR-100 alike


def _count_labels(path: Path, label_key: str = "labels") -> int:
    obj = _read_pickle(path)
    if label_key not in obj:
        hint = " (is dataset.labels right for this directory?)" if label_key != "labels" else ""
        raise DataError(f"{path}: missing key {label_key!r} (found {sorted(obj)}){hint}")
    return len(obj[label_key])


def source_sizes(data_cfg: dict) -> dict[str, int]:
    """Images per split of the configured source, without building the data set: the official sizes for
    the download, the configured ones for synthetic data, the batch files' label counts for a local
    directory (read with the restricted unpickler)."""
    source = data_cfg["source"]
    if source in ("cifar10", "cifar100"):
        return dict(CIFAR_SIZES)
    if source == "synthetic":
        syn = data_cfg.get("synthetic", {})
        return {"train": syn.get("train_images", 2000), "test": syn.get("test_images", 500)}
    if source == "local":
        path = Path(data_cfg["path"])
        if cifar_dir_layout(path) == "cifar100":
            label_key = CIFAR100_LABELS.get(data_cfg.get("labels", "fine"), ("fine_labels",))[0]
            return {
                "train": _count_labels(path / "train", label_key),
                "test": _count_labels(path / "test", label_key),
            }
        return {
            "train": sum(_count_labels(path / n) for n in TRAIN_BATCHES),
            "test": _count_labels(path / TEST_BATCH),
        }
    raise ConfigError(f"dataset.source: unknown source {source!r} (use {', '.join(SOURCES)})")


def split_sizes(data_cfg: dict) -> dict[str, int]:
    """Images per split of the dataset file this configuration writes (after `train_size`/`test_size`);
    a subset larger than its split is a ConfigError naming the key."""
    sizes = source_sizes(data_cfg)
    for name in SPLITS:
        size = data_cfg.get(f"{name}_size")
        if size is not None:
            if size > sizes[name]:
                raise ConfigError(
                    f"dataset.{name}_size: asked for {size} images but the {name} split of the "
                    f"{data_cfg['source']} source has only {sizes[name]}"
                )
            sizes[name] = size
    calibration = data_cfg.get("calibration_size") or 0
    if calibration >= sizes["train"]:
        raise ConfigError(
            f"dataset.calibration_size: {calibration} calibration images are held out of the "
            f"{sizes['train']} training images, which leaves nothing to train on"
        )
    sizes["train"] -= calibration
    sizes["calibration"] = calibration
    return sizes
