"""Attack files: the HDF5 file of one (attack, epsilon, split), read, checked, summarised and merged from shards.

Without torch: the tables, figures and the report read attack files through this module.

File layout (`results/attacks/<run>/<attack>/eps<eps>/<split>.h5`)::

    adv         float32 N x 3 x 32 x 32 in [0, 1] (Foolbox's clipped output; rounded to the 8-bit grid
                inside the eps ball only for an attack with `quantize: 8bit`, attribute `quantize`)
    index       int64 N   position of each image in the split of the dataset file
    label       int64 N   true class
    pred_clean  int64 N   classifier prediction on the clean image   } the classifier's evaluation copy
    pred_adv    int64 N   classifier prediction on `adv`             } (`inference.predict` at the same batch size)
    success     bool  N   pred_adv != label
    sub_attack  int8  N   AutoAttack only: position in attrs `sub_attacks` of the sub-attack that fooled the
                          classifier (-1: none did)
    linf, l2    float32 N norms of adv - clean
    attrs: attack, foolbox_class, params (JSON), epsilon, norm, seed, versions (JSON),
           quantize (float | 8bit), sub_attacks (JSON), warnings (JSON: the attack's own warnings),
           classifier_sha256, dataset, split, seconds, images_per_s, format
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .errors import PipelineFileError
from .h5io import atomic_h5, open_pipeline_file
from .plan.names import eps_tag

log = logging.getLogger(__name__)

ATTACK_FORMAT = "advdefense-attack-v1"
ATTACK_DATASETS = ("adv", "index", "label", "pred_clean", "pred_adv", "success", "linf", "l2")
# AutoAttack: which sub-attack fooled the model (-1: none); restarts > 1: which run's adversarial is kept (0-based)
OPTIONAL_DATASETS = ("sub_attack", "restart")


class AttackFileError(PipelineFileError):
    """An attack file is missing, incomplete or holds invalid images."""


@dataclass(frozen=True, eq=False)
class AttackArrays:
    """What a reader took from one attack file (`read_attack_file`), checked: its attributes and the datasets it
    asked for (`None`: not read; `sub_attack` and `restart` only where the file has them and they were asked for).
    """

    path: Path
    attrs: dict
    adv: np.ndarray | None = None
    index: np.ndarray | None = None
    label: np.ndarray | None = None
    pred_clean: np.ndarray | None = None
    pred_adv: np.ndarray | None = None
    success: np.ndarray | None = None
    linf: np.ndarray | None = None
    l2: np.ndarray | None = None
    sub_attack: np.ndarray | None = None
    restart: np.ndarray | None = None

    def has(self, name: str) -> bool:
        return getattr(self, name) is not None

    def arrays(self, names) -> dict[str, np.ndarray]:
        """{name: array} of `names` (each must have been read)."""
        missing = [n for n in names if not self.has(n)]
        if missing:
            raise ValueError(f"{self.path}: {', '.join(missing)} not read (add to `require`)")
        return {n: getattr(self, n) for n in names}

    @property
    def epsilon(self) -> float:
        return float(self.attrs["epsilon"])

    def __len__(self) -> int:
        lengths = [len(getattr(self, n)) for n in ATTACK_DATASETS + OPTIONAL_DATASETS if self.has(n)]
        return lengths[0] if lengths else 0


def check_adversarials(adv: np.ndarray, path, first: int = 0) -> None:
    """Shape, finiteness and the [0, 1] range of a block of stored adversarials; `first` is the position
    of `adv[0]` in the file. The error names the file and the first bad image."""
    if adv.ndim != 4 or adv.shape[1:] != (3, 32, 32):
        raise AttackFileError(f"{path}: 'adv' must be N x 3 x 32 x 32, found {adv.shape}")
    flat = adv.reshape(len(adv), -1)
    finite = np.isfinite(flat).all(1)
    with np.errstate(invalid="ignore"):
        in_range = finite & (flat.min(1, initial=0.0) >= 0.0) & (flat.max(1, initial=1.0) <= 1.0)
    if not in_range.all():
        i = int(np.flatnonzero(~in_range)[0])
        img = adv[i]
        what = (
            "non-finite values (NaN or inf)"
            if not finite[i]
            else f"values outside [0, 1] (min {img.min():.6g}, max {img.max():.6g})"
        )
        raise AttackFileError(
            f"{path}: adversarial image {first + i} (of 'adv') holds {what}; "
            f"{int((~in_range).sum())} bad image(s) in images {first}..{first + len(adv) - 1}"
        )


# .../<attack>/eps<eps>/<split>.h5 and .../<attack>/eps<eps>/shards/<split>.<k>-of-<n>.h5 (plan.names ATTACK, ATTACK_SHARD)
_LAYOUT = re.compile(
    r"(?:^|/)(?P<attack>[^/]+)/eps(?P<eps>[^/]+)/(?:shards/)?(?P<split>[a-z]+)(?:\.\d+-of-\d+)?\.h5$"
)


def check_attrs_against_path(attrs, path) -> None:
    """An attack file in the results layout must say what its path says: attack, epsilon and split (an
    `epsilon` of 0.5 in an eps0.03 file would be reported as 0.5)."""
    found = _LAYOUT.search(Path(path).as_posix())
    if found is None:
        return
    said = {
        "attack": str(attrs.get("attack")),
        "eps": eps_tag(attrs["epsilon"]) if "epsilon" in attrs else None,
        "split": str(attrs.get("split")),
    }
    differ = [
        f"{k} {said[k]!r} (path: {found[k]!r})" for k in ("attack", "eps", "split") if said[k] != found[k]
    ]
    if differ:
        raise AttackFileError(
            f"{path}: its attributes say {', '.join(differ)}: the file is not what its path says"
        )


def check_attack_arrays(a: AttackArrays) -> None:
    """What an attack file's own arrays must agree on: every image position once and not negative, and `success`
    exactly where the stored prediction on the adversarial differs from the label."""
    path = a.path
    if a.has("index"):
        index = np.asarray(a.index)
        if index.size and index.min() < 0:
            raise AttackFileError(
                f"{path}: 'index' holds negative image positions (first at row {int(np.argmin(index))})"
            )
        if len(np.unique(index)) != len(index):
            raise AttackFileError(
                f"{path}: 'index' names {len(index) - len(np.unique(index))} image(s) twice"
            )
    if all(a.has(k) for k in ("success", "pred_adv", "label")):
        wrong = np.asarray(a.success, bool) != (np.asarray(a.pred_adv) != np.asarray(a.label))
        if wrong.any():
            raise AttackFileError(
                f"{path}: 'success' disagrees with pred_adv != label for {int(wrong.sum())} of {len(wrong)} images "
                f"(first: row {int(np.argmax(wrong))}): success is what the predictions say, nothing else"
            )


NORM_TOLERANCE = 1e-5  # float32 arithmetic of the attack and of this check


def check_positions_and_labels(a: AttackArrays, labels: np.ndarray) -> None:
    """Against the data set's `labels` of the split the file was made from: every position within the split,
    and the stored labels the data set's."""
    path, index = a.path, np.asarray(a.index)
    if index.size and index.max() >= len(labels):
        raise AttackFileError(
            f"{path}: 'index' names image {int(index.max())}, but the split has {len(labels)} images "
            f"(0..{len(labels) - 1})"
        )
    if a.has("label"):
        wrong = np.asarray(a.label) != labels[index]
        if wrong.any():
            i = int(np.argmax(wrong))
            raise AttackFileError(
                f"{path}: 'label' differs from the data set's labels for {int(wrong.sum())} of {len(wrong)} images "
                f"(first: row {i}, label {int(a.label[i])}, data set {int(labels[index[i]])})"
            )


def check_norms(a: AttackArrays, clean: np.ndarray) -> None:
    """The adversarials' distances to their clean images (`clean`: uint8, the images at a.index) recomputed:
    within the file's epsilon in its norm, and equal to the stored `linf` / `l2`."""
    path, attrs, n = a.path, a.attrs, len(a.adv)
    delta = a.adv.reshape(n, -1) - clean.reshape(n, -1).astype(np.float32) / 255.0
    norms = {"linf": np.abs(delta).max(1, initial=0.0), "l2": np.sqrt((delta.astype(np.float64) ** 2).sum(1))}
    eps, norm = float(attrs["epsilon"]), str(attrs.get("norm", "linf"))
    if norm in norms:
        over = norms[norm] > eps * (1 + NORM_TOLERANCE) + NORM_TOLERANCE
        if over.any():
            i = int(np.argmax(over))
            raise AttackFileError(
                f"{path}: {int(over.sum())} adversarial(s) lie outside the {norm} ball of epsilon {eps:g} around "
                f"their clean image (first: row {i}, {norm} distance {norms[norm][i]:.6g})"
            )
    for key, value in norms.items():
        stored = getattr(a, key)
        if stored is not None and not np.allclose(stored, value, atol=NORM_TOLERANCE, rtol=NORM_TOLERANCE):
            i = int(np.argmax(np.abs(stored - value)))
            raise AttackFileError(
                f"{path}: the stored '{key}' is not the distance of the adversarials to their clean images "
                f"(row {i}: stored {float(stored[i]):.6g}, recomputed {float(value[i]):.6g})"
            )


@contextlib.contextmanager
def open_attack_file(path, require: tuple[str, ...] = ATTACK_DATASETS) -> Iterator[h5py.File]:
    """Open an attack file for reading: it must exist, be readable HDF5, carry this pipeline's attack
    format and the datasets `require`, all of one length, and attributes that say what its path says.
    Errors name the file."""
    if not Path(path).is_file():
        raise AttackFileError(f"attack file {path} does not exist")
    with open_pipeline_file(path, ATTACK_FORMAT, "attack", require, AttackFileError) as f:
        check_attrs_against_path(f.attrs, path)
        yield f


def read_attack_file(
    path: str | Path, require: tuple[str, ...] = ATTACK_DATASETS, data=None, split: str | None = None
) -> AttackArrays:
    """Load an attack file's datasets `require` (and its attributes); `adv`, when required, is checked image by
    image (finite, in [0, 1]) as every stage needs it, and the arrays against each other (`check_attack_arrays`).
    With `data` (the dataset file's path, or a `data.DatasetFile`), also against the data set: positions,
    labels, and the norms of the adversarials (`check_against_data`). The one reader of attack files."""
    unknown = [k for k in require if k not in ATTACK_DATASETS + OPTIONAL_DATASETS]
    if unknown:
        raise ValueError(f"not datasets of an attack file: {', '.join(unknown)}")
    with open_attack_file(path, require) as f:
        a = AttackArrays(Path(path), dict(f.attrs), **{k: f[k][()] for k in require})
    if a.has("adv"):
        check_adversarials(a.adv, path)
    check_attack_arrays(a)
    if data is not None and a.has("index"):
        check_against_data(a, data, split or str(a.attrs.get("split")))
    return a


def check_against_data(a: AttackArrays, data, split: str) -> None:
    """`check_positions_and_labels`, and `check_norms` where the adversarials were read; `data`: the dataset
    file's path or a `data.DatasetFile` (whose split is used where it has read it already; else only the images
    at the file's positions are read)."""
    from .data import DatasetFile, read_split, split_labels

    cached = data.loaded(split) if isinstance(data, DatasetFile) else None
    data_path = data.path if isinstance(data, DatasetFile) else data
    check_positions_and_labels(a, cached.labels if cached is not None else split_labels(data_path, split))
    if a.has("adv"):
        index = np.asarray(a.index)
        if cached is not None:
            clean = cached.images[index]
        else:
            order = np.argsort(index)
            clean = np.empty((len(index), 3, 32, 32), np.uint8)
            clean[order] = read_split(data_path, split, index=index[order]).images
        check_norms(a, clean)


def iter_adversarial_batches(path: str | Path, batch_size: int) -> Iterator[np.ndarray]:
    """The stored adversarials of an attack file in batches of `batch_size` (float32 N x 3 x 32 x 32),
    each checked like `read_attack_file` checks them: for stages that stream instead of loading all."""
    with open_attack_file(path, ("adv",)) as f:
        adv = f["adv"]
        for start in range(0, len(adv), batch_size):
            block = adv[start : start + batch_size]
            check_adversarials(block, path, start)
            yield block


# ----------------------------------------------------------------------------- the writer
class AttackFileWriter:
    """Writes the layout the readers above check, into an open (temporary) HDF5 file `f`: every dataset made for
    the job's images up front (`index`: their positions in the split, `labels`), each batch written where it
    falls, the attributes last (`finish`, which also summarises the file). `sub_attacks`: the method reports
    which of its sub-attacks found each adversarial (AutoAttack); `restarts`: which restart's adversarial is
    stored."""

    def __init__(
        self, f: h5py.File, index: np.ndarray, labels: np.ndarray, *, sub_attacks: bool, restarts: bool
    ):
        n = len(index)
        self.f = f
        # float32 adversarials barely compress (about 20 % with gzip) and compressing costs more than
        # the attack itself on a GPU: chunked, uncompressed
        self.ds = {
            "adv": f.create_dataset("adv", (n, 3, 32, 32), np.float32, chunks=(min(n, 128), 3, 32, 32)),
            "index": f.create_dataset("index", data=index),
            "label": f.create_dataset("label", data=np.asarray(labels, dtype=np.int64)),
            "pred_clean": f.create_dataset("pred_clean", (n,), np.int64),
            "pred_adv": f.create_dataset("pred_adv", (n,), np.int64),
            "success": f.create_dataset("success", (n,), bool),
            "linf": f.create_dataset("linf", (n,), np.float32),
            "l2": f.create_dataset("l2", (n,), np.float32),
        }
        if sub_attacks:
            self.ds["sub_attack"] = f.create_dataset("sub_attack", (n,), np.int8)
        if restarts:
            self.ds["restart"] = f.create_dataset("restart", (n,), np.int8)

    def write(self, start: int, **batch: np.ndarray) -> None:
        """One batch's arrays (adv, pred_clean, pred_adv, success, linf, l2, and sub_attack / restart where the
        file has them) at images [start, start + len(adv))."""
        unknown = sorted(set(batch) - set(self.ds))
        missing = sorted(set(self.ds) - set(batch) - {"index", "label"})
        if unknown or missing:
            raise ValueError(f"attack file batch: unknown {unknown}, missing {missing}")
        sl = slice(start, start + len(batch["adv"]))
        for name, values in batch.items():
            self.ds[name][sl] = values

    def finish(self, attrs: dict) -> dict:
        """The file's attributes (`format` first) and its summary."""
        self.f.attrs.update({"format": ATTACK_FORMAT, **attrs})
        return summarize_attack_file(self.f)


SUMMARY_DATASETS = ("label", "pred_clean", "pred_adv", "success", "linf", "l2")


def summarize_attack_file(f: h5py.File) -> dict:
    label, pred_clean, pred_adv = f["label"][()], f["pred_clean"][()], f["pred_adv"][()]
    success, linf, l2 = f["success"][()], f["linf"][()], f["l2"][()]
    check_attack_arrays(
        AttackArrays(Path(f.filename), dict(f.attrs), label=label, pred_adv=pred_adv, success=success)
    )
    correct = pred_clean == label
    n = len(label)
    return {
        "attack": f.attrs["attack"],
        "epsilon": float(f.attrs["epsilon"]),
        "split": f.attrs.get("split", ""),
        "norm": f.attrs["norm"],
        "foolbox_class": f.attrs["foolbox_class"],
        "quantize": f.attrs.get("quantize", "float"),
        "n": n,
        "unchanged": int((linf == 0).sum()),
        "clean_accuracy": float(correct.mean()) if n else float("nan"),
        "robust_accuracy": float((pred_adv == label).mean()) if n else float("nan"),
        "success_rate": float(success.mean()) if n else float("nan"),
        "success_rate_on_correct": float(success[correct].mean()) if correct.any() else float("nan"),
        "mean_linf": float(linf.mean()) if n else float("nan"),
        "max_linf": float(linf.max()) if n else float("nan"),
        "mean_l2": float(l2.mean()) if n else float("nan"),
        "max_l2": float(l2.max()) if n else float("nan"),
        **fooled_by(f),
        "warnings": " | ".join(json.loads(f.attrs.get("warnings", "[]"))),
        "seconds": float(f.attrs.get("seconds", float("nan"))),
        "images_per_s": float(f.attrs.get("images_per_s", float("nan"))),
    }


def fooled_by(f: h5py.File) -> dict[str, int]:
    """{fooled_by_<sub-attack>: how many images it fooled first} of an AutoAttack file, e.g. fooled_by_apgd-ce
    812, fooled_by_apgd-t 9 (numbers, so that they gather over seeds); {} for other attacks."""
    subs = json.loads(f.attrs.get("sub_attacks", "[]"))
    if not subs or "sub_attack" not in f:
        return {}
    counts = np.bincount(f["sub_attack"][()].astype(np.int64) + 1, minlength=len(subs) + 1)[1:]
    return {f"fooled_by_{s}": int(c) for s, c in zip(subs, counts)}


def summarize_attack_files(paths, data=None):
    """One row per attack file; with `data` (the dataset file), each file is first checked against it."""
    rows = []
    for path in paths:
        if data is not None:
            read_attack_file(path, data=data)
        with open_attack_file(path, SUMMARY_DATASETS) as f:
            rows.append(summarize_attack_file(f))
    # one fooled_by_<sub-attack> column per AutoAttack sub-attack of any file (empty for the other attacks)
    subs = list(dict.fromkeys(k for row in rows for k in row if k.startswith("fooled_by_")))
    columns = [
        "attack",
        "epsilon",
        "split",
        "norm",
        "foolbox_class",
        "quantize",
        "n",
        "unchanged",
        "clean_accuracy",
        "robust_accuracy",
        "success_rate",
        "success_rate_on_correct",
        "mean_linf",
        "max_linf",
        "mean_l2",
        "max_l2",
        *subs,
        "warnings",
        "seconds",
        "images_per_s",
    ]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values(["attack", "epsilon", "split"]).reset_index(drop=True)


SHARD_ATTRS = ("shard", "shards", "shard_first", "shard_of_images")
# attributes of an attack file that describe one run of the job rather than the job: where and how fast it ran,
# which shard it is, the attack's own warnings (gathered over the shards)
RUN_ATTRS = frozenset({"seconds", "images_per_s", "warnings", "device", "shard", "shard_first"})


def _job_attrs_differ(a: dict, b: dict) -> list[str]:
    """The attributes that define an attack job (attack, class, norm, params, epsilon, quantize, restarts, seed,
    batch size, split, dataset, the classifier's sha256, versions ...: all but RUN_ATTRS) on which two files differ,
    as 'key (a vs b)'."""
    keys = sorted((set(a) | set(b)) - RUN_ATTRS)
    return [
        f"{k} ({a.get(k, '<absent>')!r} vs {b.get(k, '<absent>')!r})"
        for k in keys
        if not _same_value(a.get(k), b.get(k))
    ]


def _same_value(x, y) -> bool:
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return np.array_equal(np.asarray(x), np.asarray(y))
    return x == y


def merge_attack_shards(paths: list, out_path, block: int = 1024, data=None) -> dict:
    """The attack file of a whole job from its shards (in order): their datasets joined, their attributes those of
    the first shard but the seconds summed. Equal, dataset for dataset, to the file of the unsharded job. Copied
    `block` images at a time: memory stays flat in the number of images."""
    if not paths:
        raise AttackFileError(f"{out_path}: no shards to merge")
    attrs, lengths, keys, expected_first, warned = None, [], None, 0, []
    for k, path in enumerate(paths):
        if data is not None:  # a shard made on another machine: what the data set lets us recompute
            read_attack_file(path, data=data)
        with open_attack_file(path) as f:
            a = dict(f.attrs)
            if a.get("shard") != k or a.get("shards") != len(paths):
                raise AttackFileError(
                    f"{path}: holds shard {a.get('shard', '?')} of {a.get('shards', '?')}, "
                    f"expected shard {k} of {len(paths)}"
                )
            if a["shard_first"] != expected_first:
                raise AttackFileError(
                    f"{path}: starts at image {a['shard_first']}, expected {expected_first} (shards "
                    f"of different batch sizes cannot be joined; re-run them)"
                )
            here = [x for x in ATTACK_DATASETS + OPTIONAL_DATASETS if x in f]
            warned += [w for w in json.loads(a.get("warnings", "[]")) if w not in warned]
            if attrs is None:
                attrs, keys = a, here
            else:
                differ = _job_attrs_differ(attrs, a)
                if differ or here != keys:
                    what = "; ".join(differ) if differ else f"datasets {here} vs {keys}"
                    raise AttackFileError(
                        f"{path}: made by another job than {paths[0]} ({what}); every shard of a "
                        f"job must come from the same attack, settings, classifier and data: "
                        f"delete the shards and run them again"
                    )
                attrs["seconds"] += a["seconds"]
            lengths.append(len(f["index"]))
            expected_first += lengths[-1]
    n = expected_first
    if n != attrs["shard_of_images"]:
        raise AttackFileError(
            f"{out_path}: the shards hold {n} images, the job has {attrs['shard_of_images']}"
        )
    with atomic_h5(out_path) as out:
        with h5py.File(paths[0], "r") as f:
            ds = {
                key: out.create_dataset(
                    key,
                    (n, *f[key].shape[1:]),
                    f[key].dtype,
                    chunks=(min(n, 128), 3, 32, 32) if key == "adv" else None,
                )
                for key in keys
            }
        start = 0
        for path, length in zip(paths, lengths):
            with h5py.File(path, "r") as f:
                for lo in range(0, length, block):
                    hi = min(lo + block, length)
                    for key in keys:
                        ds[key][start + lo : start + hi] = f[key][lo:hi]
            start += length
        out.attrs.update({k: v for k, v in attrs.items() if k not in SHARD_ATTRS})
        out.attrs.update(
            {
                "images_per_s": n / attrs["seconds"],
                "merged_shards": len(paths),
                "warnings": json.dumps(warned),
            }
        )
        summary = summarize_attack_file(out)
    log.info("%s: %d shards merged (%d images)", out_path, len(paths), n)
    return summary
