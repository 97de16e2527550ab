"""How smooth an attack's perturbations are: the share of horizontally neighbouring pixels (same image, channel
and row) whose perturbation has the same sign, over the pixels the attack moved. Independent signs give 50 %,
a perturbation made of flat patches near 100 %. Against an adversarially trained classifier the perturbations
come out far smoother than against a standard one (the work log, docs/notes/, issue 24), which is why the detectors that
learn the attack's texture see less of them.

    .venv/bin/python benchmarks/perturbation_texture.py results/data/RUN.h5 results/attacks/RUN/pgd/eps*/test.h5

prints one line per attack file: the file, its images, and the share in %.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def same_sign_share(delta: np.ndarray) -> float:
    """% of horizontal neighbour pairs of `delta` (N x C x H x W), both moved, whose changes have the same sign."""
    if delta.ndim != 4:
        raise ValueError(f"perturbations of shape {delta.shape}: expected N x C x H x W")
    sign = np.sign(delta)
    left, right = sign[..., :, :-1], sign[..., :, 1:]
    moved = (left != 0) & (right != 0)
    if not moved.any():
        raise ValueError("no two neighbouring pixels were moved: nothing to measure")
    return float(100.0 * ((left == right) & moved).sum() / moved.sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", type=Path, help="the run's dataset HDF5 (results/data/RUN.h5)")
    parser.add_argument(
        "attacks", type=Path, nargs="+", help="attack files of that run (test or train split)"
    )
    args = parser.parse_args(argv)
    from advdefense.attack_files import read_attack_file
    from advdefense.data import DatasetFile

    data = DatasetFile(args.dataset)  # each split read once, when a file first needs it
    for path in args.attacks:
        attack = read_attack_file(path, require=("adv", "index"))
        clean = data.split(attack.attrs["split"]).images[attack.index].astype(np.float32) / 255.0
        share = same_sign_share(attack.adv.astype(np.float32) - clean)
        print(f"{path}\t{len(clean)} images\t{share:.1f} % of neighbours moved the same way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
