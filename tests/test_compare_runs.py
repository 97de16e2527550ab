"""benchmarks/compare_runs.py: what a behaviour-preserving change must leave identical, and what it may not."""

import importlib.util
import json

import h5py
import numpy as np

from conftest import REPO

_spec = importlib.util.spec_from_file_location("compare_runs", REPO / "benchmarks/compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


def _run(root, adv, seconds, accuracy=0.9, extra=None):
    results = root / "results"
    (results / "attacks/r/pgd/eps0.03").mkdir(parents=True)
    with h5py.File(results / "attacks/r/pgd/eps0.03/test.h5", "w") as f:
        f["adv"] = adv
        f.attrs.update({"seconds": seconds, "epsilon": 0.03})
    (results / "tables/r").mkdir(parents=True)
    (results / "tables/r/summary.csv").write_text(f"attack,success,seconds\npgd,0.5,{seconds}\n")
    (results / "metrics.json").write_text(
        json.dumps({"test_accuracy": accuracy, "wall_seconds_this_run": seconds})
    )
    (results / "benchmarks").mkdir()
    (results / "benchmarks/x.tsv").write_text(f"{seconds}\n")  # job timings: never compared
    if extra:
        (results / extra).write_text("x")
    return root


def test_runs_that_differ_only_in_timing_compare_equal(tmp_path):
    adv = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    a, b = _run(tmp_path / "a", adv, 1.0), _run(tmp_path / "b", adv.copy(), 2.5)
    assert compare_runs.compare(a, b) == (3, [])


def test_a_changed_bit_a_changed_value_and_a_missing_file_are_reported(tmp_path):
    adv = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    other = adv.copy()
    other.view(np.uint32)[0, 0, 0, 0] ^= 1  # one bit of one pixel
    a = _run(tmp_path / "a", adv, 1.0, extra="only_a.md")
    b = _run(tmp_path / "b", other, 1.0, accuracy=0.91)
    n, report = compare_runs.compare(a, b)
    assert n == 3
    assert report == [
        f"only in {a}: only_a.md",
        "attacks/r/pgd/eps0.03/test.h5: dataset adv differs",
        "metrics.json: values differ",
    ]
