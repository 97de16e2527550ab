"""How much the CIFAR-10 JPEG copy costs a classifier (issue 23): the mini CIFAR-10 with its official pixels
against the same images with their JPEG-copy pixels.

The mini copy (../shared/data/cifar-10-mini: 4000 training + 1000 test images, all official training images,
official pixels) and the JPEG copy (../shared/data/cifar-10-jpeg: every official training image, pixels
decoded from third-party JPEG files) share 5000 images. This script finds each mini image's JPEG twin (its
nearest JPEG training image of its class by mean absolute pixel error, at most 20/255, and for a training
image the one its file name's official position names) and writes the same
5000 images, labels, file names and order with the JPEG pixels in the official python layout. Training the same
configuration on both layouts then measures what the JPEG pixels alone cost, with everything else equal:

    .venv/bin/python ../shared/data/cifar-10-jpeg/build_batches.py resources/cifar-10-jpeg
    .venv/bin/python benchmarks/jpeg_gap.py match ../shared/data/cifar-10-mini/cifar-10-batches-py \\
        resources/cifar-10-jpeg/cifar-10-batches-py resources/cifar-10-mini-jpeg
    snakemake --cores 2 results/classifier/cifar10-mini-jpeg-seed{0,1,2}/metrics.json \\
        --configfile config/cifar10-mini.yaml benchmarks/jpeg_gap.yaml
    snakemake --cores 2 results/classifier/cifar10-mini-seed{0,1,2}/metrics.json \\
        --configfile config/cifar10-mini.yaml config/mini-detection-over-seeds.yaml   (official pixels)
    .venv/bin/python benchmarks/jpeg_gap.py cross --models results/classifier/cifar10-mini*-seed*/model.pt \\
        --tests ../shared/data/cifar-10-mini/cifar-10-batches-py/test_batch \\
        resources/cifar-10-mini-jpeg/cifar-10-batches-py/test_batch   (each model on both test sets)

Nothing from the JPEG copy is committed; the numbers are labelled "CIFAR-10 (JPEG copy)".
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def _load(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _jpeg_train(jpeg_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every JPEG-copy training image (50 000 x 3072 uint8, official order) and its label."""
    batches = [_load(jpeg_dir / b) for b in BATCHES]
    return np.concatenate([b["data"] for b in batches]), np.concatenate([b["labels"] for b in batches])


def _official_position(filename: str) -> int | None:
    """data_batch_<b>_<i>.png -> 10000 (b - 1) + i; None for another name (the mini test images)."""
    parts = filename.rsplit(".", 1)[0].split("_")
    if len(parts) == 4 and parts[:2] == ["data", "batch"]:
        return 10000 * (int(parts[2]) - 1) + int(parts[3])
    return None


def match(mini_dir: Path, jpeg_dir: Path, out_dir: Path) -> dict:
    """Write the mini layout with JPEG pixels to out_dir/cifar-10-batches-py; return the match statistics."""
    pixels, labels = _jpeg_train(jpeg_dir)
    by_class = {c: np.flatnonzero(labels == c) for c in range(10)}
    # a coarse signature (4 x 4 block means per channel) shortlists candidates; the full MAE decides
    coarse = pixels.reshape(-1, 3, 8, 4, 8, 4).astype(np.float32).mean((3, 5)).reshape(len(pixels), -1)
    out = out_dir / "cifar-10-batches-py"
    out.mkdir(parents=True, exist_ok=True)
    errors, margins, used = [], [], set()
    for name in [*BATCHES, "test_batch"]:
        batch = _load(mini_dir / name)
        data = np.asarray(batch["data"], np.uint8)
        twins = np.empty(len(data), np.int64)
        for i, (image, label) in enumerate(zip(data, batch["labels"])):
            cand = by_class[int(label)]
            sig = image.reshape(3, 8, 4, 8, 4).astype(np.float32).mean((2, 4)).reshape(-1)
            short = cand[np.argsort(np.abs(coarse[cand] - sig).mean(1))[:300]]
            mae = np.abs(pixels[short].astype(np.int16) - image.astype(np.int16)).mean(1)
            order = np.argsort(mae)
            best, second = mae[order[0]], mae[order[1]]
            # a training image's file name gives its official position (data_batch_<b>_<i>: image i of batch b)
            named = _official_position(batch["filenames"][i])
            if best > 20 or (named is not None and short[order[0]] != named):
                raise SystemExit(
                    f"{name} image {i} ({batch['filenames'][i]}): its nearest JPEG image {short[order[0]]} "
                    f"(MAE {best:.1f} of 255) is not its twin"
                )
            twins[i] = short[order[0]]
            errors.append(best)
            margins.append(second / max(best, 1e-9))
        if len(set(twins.tolist()) | used) != len(used) + len(twins):
            raise SystemExit(f"{name}: two mini images matched the same JPEG image")
        used |= set(twins.tolist())
        copy = dict(batch, data=pixels[twins], batch_label=f"{batch['batch_label']} (JPEG-copy pixels)")
        with open(out / name, "wb") as f:
            pickle.dump(copy, f, protocol=2)
    (out / "batches.meta").write_bytes((mini_dir / "batches.meta").read_bytes())
    stats = {
        "images": len(errors),
        "mae_mean_of_255": float(np.mean(errors)),
        "mae_p95_of_255": float(np.percentile(errors, 95)),
        "mae_max_of_255": float(np.max(errors)),
        "second_nearest_over_nearest_min": float(np.min(margins)),
        "second_nearest_over_nearest_median": float(np.median(margins)),
    }
    (out_dir / "match.json").write_text(json.dumps(stats, indent=1))
    return stats


def cross(models: list[Path], test_batches: list[Path]) -> list[dict]:
    """Each classifier (a results/classifier/<run>/model.pt) on each test_batch: accuracy."""
    import torch

    from advdefense.classifier import load_classifier
    from advdefense.inference import predict

    rows = []
    for model_path in models:
        model = load_classifier(model_path)
        for test in test_batches:
            batch = _load(test)
            x = torch.from_numpy(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
            pred = predict(model, x, 500, torch.device("cpu")).numpy()
            acc = float((pred == np.asarray(batch["labels"])).mean())
            rows.append({"model": str(model_path), "test": str(test), "accuracy": acc, "images": len(x)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("match", help="write the mini layout with the JPEG-copy pixels")
    m.add_argument("mini_dir", type=Path)
    m.add_argument("jpeg_dir", type=Path)
    m.add_argument("out_dir", type=Path)
    c = sub.add_parser("cross", help="each classifier on each test set")
    c.add_argument("--models", type=Path, nargs="+", required=True)
    c.add_argument("--tests", type=Path, nargs="+", required=True)
    args = parser.parse_args(argv)
    if args.command == "match":
        print(json.dumps(match(args.mini_dir, args.jpeg_dir, args.out_dir), indent=1))
    else:
        for row in cross(args.models, args.tests):
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
