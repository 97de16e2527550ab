"""Compare two runs' results, file by file: what a behaviour-preserving change must leave identical.

    python benchmarks/compare_runs.py RUN_A RUN_B

RUN_A and RUN_B are working directories of two runs of one config (e.g. the smoke config before and after a
restructure). Every file under results/ (benchmarks/ aside) is compared by what it holds, leaving out what
records when and how fast a job ran: HDF5 files dataset by dataset (bit for bit) and attribute by attribute;
checkpoints tensor by tensor; CSV, Markdown and JSON as text or values with timing fields left out; PNG
figures byte for byte. Prints one line per file that differs (and files only one run has), then a summary;
exit status 1 when anything differs.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import h5py
import numpy as np

# attributes, JSON keys and CSV columns that record the run, not its result
TIMING = {
    "seconds",
    "images_per_s",
    "train_seconds",
    "train_images_per_s",
    "versions",
    "wall_seconds",
    "epoch_seconds",
    "device",
    "warnings",
}
TIMING_SUFFIXES = ("_seconds", "_per_s", "_s")


def _timing(name: str) -> bool:
    return name in TIMING or name.endswith(TIMING_SUFFIXES) or "seconds" in name


def _h5_differences(a: Path, b: Path) -> list[str]:
    out = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            out.append(f"members differ: {sorted(set(names_a) ^ set(names_b))}")
        for obj_a, obj_b, where in [(fa, fb, "/")] + [(fa[n], fb[n], n) for n in names_a if n in fb]:
            keys = (set(obj_a.attrs) | set(obj_b.attrs)) - {k for k in obj_a.attrs if _timing(k)}
            for k in sorted(keys):
                va, vb = obj_a.attrs.get(k), obj_b.attrs.get(k)
                if not np.array_equal(np.asarray(va), np.asarray(vb)):
                    out.append(f"{where} attr {k}: {va!r} != {vb!r}"[:300])
            if isinstance(obj_a, h5py.Dataset) and not np.array_equal(obj_a[()], obj_b[()], equal_nan=True):
                out.append(f"dataset {where} differs")
    return out


def _pt_differences(a: Path, b: Path) -> list[str]:
    import torch

    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)

    def flat(obj, prefix=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield from flat(v, f"{prefix}{k}.")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from flat(v, f"{prefix}{i}.")
        else:
            yield prefix.rstrip("."), obj

    da, db = dict(flat(sa)), dict(flat(sb))
    out = [f"keys differ: {sorted(set(da) ^ set(db))[:10]}"] if set(da) != set(db) else []
    for k in sorted(set(da) & set(db)):
        if _timing(k.split(".")[-1]):
            continue
        va, vb = da[k], db[k]
        same = (
            torch.equal(va, vb) if isinstance(va, torch.Tensor) and isinstance(vb, torch.Tensor) else va == vb
        )
        if not same:
            out.append(f"{k} differs")
    return out


def _json_differences(a: Path, b: Path) -> list[str]:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not _timing(k)}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    ja, jb = strip(json.loads(a.read_text())), strip(json.loads(b.read_text()))
    return [] if ja == jb else ["values differ"]


def _csv_differences(a: Path, b: Path) -> list[str]:
    def rows(path):
        reader = csv.DictReader(io.StringIO(path.read_text()))
        return [{k: v for k, v in r.items() if not _timing(k or "")} for r in reader]

    ra, rb = rows(a), rows(b)
    if len(ra) != len(rb):
        return [f"{len(ra)} rows != {len(rb)} rows"]
    return [f"row {i} differs" for i, (x, y) in enumerate(zip(ra, rb)) if x != y][:5]


def _md_differences(a: Path, b: Path) -> list[str]:
    # a Markdown table may carry a timing column (the attack summary); compare the lines without numbers of
    # speed only where the texts differ at all
    if a.read_bytes() == b.read_bytes():
        return []
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    return [f"line {i + 1} differs" for i, (x, y) in enumerate(zip(la, lb)) if x != y][:5] or [
        "length differs"
    ]


def differences(a: Path, b: Path) -> list[str]:
    suffix = a.suffix
    if suffix == ".h5":
        return _h5_differences(a, b)
    if suffix == ".pt":
        return _pt_differences(a, b)
    if suffix == ".json":
        return _json_differences(a, b)
    if suffix == ".csv":
        return _csv_differences(a, b)
    if suffix == ".md":
        return _md_differences(a, b)
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]


def compare(run_a: Path, run_b: Path) -> tuple[int, list[str]]:
    def files(run):
        root = run / "results"
        return {
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "benchmarks"
        }

    fa, fb = files(run_a), files(run_b)
    report = [f"only in {run_a}: {p}" for p in sorted(fa - fb)] + [
        f"only in {run_b}: {p}" for p in sorted(fb - fa)
    ]
    for rel in sorted(fa & fb):
        for line in differences(run_a / "results" / rel, run_b / "results" / rel):
            report.append(f"{rel}: {line}")
    return len(fa & fb), report


def main(argv: list[str]) -> int:
    run_a, run_b = Path(argv[0]), Path(argv[1])
    n, report = compare(run_a, run_b)
    for line in report:
        print(line)
    print(f"{n} files compared, {len(report)} difference(s)")
    return 1 if report else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
