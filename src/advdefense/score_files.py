"""The detector score file: one per (detector, training key) in the detect job's models folder,
results/detection/<run>/<method>/models/scores_<key>.npz. Its writer and its reader, in one place (issue 42).

Layout (numpy .npz): `threshold_fpr<percent>` (0-d float, one per calibrated false-positive rate, e.g.
`threshold_fpr5`), and one float array of scores per scored set: `calibration` (the clean calibration images),
`clean` (the clean test images), each test attack key, each noise control and each corruption key. A higher score
means more suspect; an image is flagged when its score is above the threshold.

Torch-free: the detection stage hands it numpy arrays; the figures and the reproduction page read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import PipelineFileError
from .h5io import atomic_path
from .plan.names import fpr_label

SCORES_PREFIX = "scores_"
THRESHOLD_PREFIX = "threshold_fpr"
REQUIRED_SETS = ("calibration", "clean")


def scores_path(folder, key: str) -> Path:
    """The score file of training key `key` in a detect job's models `folder`."""
    return Path(folder) / f"{SCORES_PREFIX}{key}.npz"


@dataclass(frozen=True)
class DetectorScores:
    """One score file: the detector trained on `key`, its `thresholds` {false-positive rate: threshold} and its
    `scores` {set: scores}."""

    path: Path
    key: str
    thresholds: dict[float, float]
    scores: dict[str, np.ndarray] = field(repr=False)

    def threshold(self, fpr: float) -> float:
        for f, t in self.thresholds.items():
            if fpr_label(f) == fpr_label(fpr):
                return t
        raise PipelineFileError(
            f"{self.path}: no threshold at a false-positive rate of {fpr:g} "
            f"(it has {', '.join(f'{f:g}' for f in sorted(self.thresholds))}); re-run the detect rule with it in "
            "detection.fprs"
        )

    def of(self, name: str) -> np.ndarray:
        """The scores of set `name` (`clean`, `calibration`, an attack key, a control or a corruption key)."""
        if name not in self.scores:
            raise PipelineFileError(
                f"{self.path}: no scores of {name!r} (it has {', '.join(sorted(self.scores))})"
            )
        return self.scores[name]

    @property
    def largest_fpr_threshold(self) -> float:
        """The threshold of the largest calibrated false-positive rate (the lowest threshold)."""
        return self.thresholds[max(self.thresholds)]


def write_scores(
    folder, key: str, thresholds: Mapping[float, float], scores: Mapping[str, np.ndarray]
) -> Path:
    """Write the score file of training key `key` into `folder`; it appears under its name only when complete."""
    missing = [s for s in REQUIRED_SETS if s not in scores]
    if missing:
        raise ValueError(f"the scores of {key!r} lack {', '.join(missing)}")
    if not thresholds:
        raise ValueError(f"the scores of {key!r} have no threshold")
    path = scores_path(folder, key)
    # a file handle: np.savez would append .npz to a temporary's name
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{f"{THRESHOLD_PREFIX}{fpr_label(f)}": t for f, t in thresholds.items()}, **scores)
    return path


def _read(path: Path) -> DetectorScores:
    key = path.stem[len(SCORES_PREFIX) :]
    try:
        # a score file never holds objects: nothing is unpickled
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except ValueError as err:
        raise PipelineFileError(f"{path}: not a score file the detect rule writes ({err})") from err
    thresholds, scores = {}, {}
    for name, value in arrays.items():
        if name.startswith(THRESHOLD_PREFIX):
            if value.ndim != 0 or not np.isfinite(value):
                raise PipelineFileError(f"{path}: {name} is not one finite number (shape {value.shape})")
            thresholds[float(name[len(THRESHOLD_PREFIX) :]) / 100] = float(value)
        else:
            if value.ndim != 1 or value.dtype.kind != "f":
                raise PipelineFileError(
                    f"{path}: the scores of {name!r} are not one float per image (shape {value.shape}, "
                    f"dtype {value.dtype})"
                )
            scores[name] = value
    missing = [s for s in REQUIRED_SETS if s not in scores]
    if missing or not thresholds:
        raise PipelineFileError(
            f"{path}: incomplete score file (no {', '.join(missing or ['threshold'])}); re-run the detect rule"
        )
    return DetectorScores(path, key, dict(sorted(thresholds.items())), scores)


def read_scores(folder, key: str) -> DetectorScores:
    """The score file of training key `key` in a detect job's models `folder`."""
    path = scores_path(folder, key)
    if not path.is_file():
        raise PipelineFileError(f"{path}: no such score file; re-run the detect rule")
    return _read(path)


def read_all_scores(folder) -> dict[str, DetectorScores]:
    """{training key: its score file} of every score file in a detect job's models `folder`, in key order."""
    paths = sorted(Path(folder).glob(f"{SCORES_PREFIX}*.npz"))
    if not paths:
        raise PipelineFileError(
            f"{folder}: no detector scores ({SCORES_PREFIX}*.npz); re-run the detect rule"
        )
    return {s.key: s for s in map(_read, paths)}
