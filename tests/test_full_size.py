"""The full-size configuration (issue 23) and the scaling fixes it needed, at small size.

No test needs the full-size data (../shared/data/cifar-10-jpeg) or runs at full size: the configuration is
validated and dry-run against a generated stand-in in the same layout, and each scaling fix has a test that the
code before it fails: memory that does not grow with the images a job does not use, and work that does not grow
with the number of scores."""

from __future__ import annotations

import pickle
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from advdefense.config import ConfigError, validate_config
from advdefense.data import Dataset, Split, attacked_images, read_split, write_dataset_h5
from advdefense.detectors import DetectorContext, PCADetector
from advdefense.metrics import roc_curve
from advdefense.plan.detector_specs import DETECTORS
from conftest import REPO, job_counts, run_snakemake


# ----------------------------------------------------------------------------- the configuration
def write_cifar_standin(
    root: Path, train_per_batch: int, test: int, seed: int = 0, zeros: bool = False
) -> Path:
    """A directory in the official cifar-10-batches-py layout (random pixels, or zeros; balanced labels)."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)

    def batch(name, n):
        data = np.zeros((n, 3072), np.uint8) if zeros else rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump(
                {
                    "batch_label": name,
                    "labels": [i % 10 for i in range(n)],
                    "data": data,
                    "filenames": [f"{i}.png" for i in range(n)],
                },
                f,
                protocol=2,
            )

    for j in range(1, 6):
        batch(f"data_batch_{j}", train_per_batch)
    batch("test_batch", test)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f, protocol=2)
    return d


def full_config() -> dict:
    return yaml.safe_load((REPO / "config/cifar10-full.yaml").read_text())


def test_full_config_asks_for_what_issue_23_asks():
    cfg = full_config()
    cfg["dataset"]["path"] = "ignored"  # the counts are checked against the stand-in below
    assert cfg["dataset"]["source"] == "local" and cfg["dataset"].get("train_size") is None  # all 50 000
    assert cfg["classifier"]["depth"] == 20
    attacks = cfg["attacks"]
    for name in ("fgsm", "pgd", "deepfool"):  # the paper's three at its 0.02, float and rounded to 8 bits
        assert 0.02 in attacks[name]["epsilons"] and attacks[f"{name}_8bit"]["epsilons"] == [0.02]
        assert attacks[f"{name}_8bit"]["quantize"] == "8bit"
    assert all(n >= 2000 for n in cfg["attack_defaults"]["images"].values())
    auto = attacks["autoattack"]
    assert auto["class"] == "AutoAttack" and auto["params"]["version"] == "standard"
    assert auto["epsilons"] == pytest.approx([0.02, 8 / 255], abs=5e-9) and auto["splits"] == ["test"]
    assert cfg["detection"]["aware"]["images"] >= 500 and "methods" not in cfg["detection"]  # every detector
    assert cfg["purification"]["adaptive"]["enabled"]


def test_full_config_validates_and_dry_runs_on_a_standin(tmp_path):
    standin = write_cifar_standin(tmp_path / "data", train_per_batch=1000, test=2000)
    cfg = full_config()
    cfg["dataset"]["path"] = str(standin)
    configfile = tmp_path / "full.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    validate_config(yaml.safe_load(configfile.read_text()))
    proc = run_snakemake(tmp_path, configfile, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # attack keys: FGSM and PGD at 4 epsilons, DeepFool and the three 8-bit attacks at 0.02 (12, on train and
    # test: 24 files), AutoAttack at 2 epsilons and the noise control at 4 on test (6 files); Table 3 (adaptive)
    # on FGSM, PGD, DeepFool: 9
    assert job_counts(proc.stdout + proc.stderr) == {
        "dataset": 1,
        "train_classifier": 1,
        "attack": 30,
        "attack_summary": 1,
        "robustbench_info": 2,  # AutoAttack at 2 epsilons on test: RobustBench model_info entries
        "train_flow": 1,
        "latents_clean": 3,
        "latents_attack": 24,
        "train_autoencoder": 1,
        "purify_clean": 1,  # the paper's autoencoder alone (purification.methods, the 3 h budget)
        "purify_attack": 18,
        "adaptive_attack": 9,
        "table3": 1,
        "detect": len(DETECTORS),  # every registered detector (detection.methods: null)
        "mmd_test": 1,
        "detection_tables": 1,
        "figure_examples": 1,
        "figure_accuracy_eps": 1,
        "figure_auroc_eps": 1,
        "figure_detection": 1,
        "figure_training": 1,
        "reproduction_page": 1,  # the run's page: the paper's numbers beside ours
        "corrupt": 15,  # the 15 CIFAR-10-C corruptions, one file each, their accuracy job and tables
        "corruption_accuracy": 1,
        "corruption_tables": 1,
        "all": 1,
    }


def test_aware_epsilons_must_be_detection_epsilons(smoke_config):
    smoke_config["detection"]["aware"] = {"epsilons": [0.02]}  # the smoke attacks run at 0.03
    with pytest.raises(ConfigError, match=r"detection\.aware\.epsilons: 0\.02 is not an epsilon"):
        validate_config(smoke_config)
    smoke_config["detection"]["aware"] = {"epsilons": [0.03]}
    assert validate_config(smoke_config)["detection"]["aware"]["epsilons"] == [0.03]


# ----------------------------------------------------------------------------- scaling: memory
def _peak_bytes(fn) -> int:
    """Peak memory that numpy (and Python) allocate while `fn` runs (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _dataset_file(path: Path, train: int) -> Path:
    rng = np.random.default_rng(0)

    def split(n):
        return Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10)

    write_dataset_h5(Dataset(split(train), split(300), tuple(f"c{k}" for k in range(10))), path)
    return path


def test_a_job_holds_only_the_images_it_uses(tmp_path):
    """An attack job on 500 training images must not hold the whole split (it read the whole dataset file:
    150 MB for the full-size one, 60 MB here at 20 000 images)."""
    small, large = _dataset_file(tmp_path / "small.h5", 2_000), _dataset_file(tmp_path / "large.h5", 20_000)
    peaks = {
        n: _peak_bytes(lambda p=p: attacked_images(p, "train", 500, seed=0))
        for n, p in ((2, small), (20, large))
    }
    assert peaks[20] < 1.2 * peaks[2], peaks  # flat in the size of the split
    assert peaks[20] < 8e6, peaks  # 500 images (1.5 MB) and one block (3 MB), not 20 000 images (61 MB)
    rows, index = attacked_images(large, "train", 500, seed=0)
    whole = read_split(large, "train")
    assert np.array_equal(rows.images, whole.images[index]) and np.array_equal(
        rows.labels, whole.labels[index]
    )


def test_read_split_refuses_positions_it_cannot_honour(tmp_path):
    path = _dataset_file(tmp_path / "d.h5", 100)
    for bad in ([3, 1], [0, 100], [-1, 2], [5, 5]):
        with pytest.raises(Exception, match=r"positions must be increasing and within 0\.\.99"):
            read_split(path, "train", np.array(bad))


def _pca(settings=None) -> PCADetector:
    return PCADetector(
        {"skip_components": 10, **(settings or {})},
        DetectorContext(0, torch.device("cpu"), Path(".")),
        "overall",
    )


def test_pca_fit_memory_does_not_grow_with_the_training_pool():
    """The PCA detector fits on every clean training image; its SVD of the centred float64 data held three
    copies of it (3.5 GB at full size). Now: the covariance and one block."""
    rng = np.random.default_rng(0)
    pools = {n: rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8) for n in (5_000, 50_000)}
    peaks = {
        n: _peak_bytes(lambda x=x: _pca().fit(x[:10], np.zeros(10), clean_pool=x)) for n, x in pools.items()
    }
    assert peaks[50_000] < 1.2 * peaks[5_000], peaks  # 50 000 x 192 float64 is 77 MB; three copies 230 MB


def test_pca_equals_the_svd_of_the_centred_data():
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(48, 48)) * np.linspace(1, 0.01, 48)
    x = (rng.normal(size=(2000, 48)) @ mixing.T).reshape(2000, 3, 4, 4).astype(np.float32)
    detector = _pca()
    detector.fit(x[:10], np.zeros(10), clean_pool=x)
    rows = x.reshape(2000, -1).astype(np.float64)
    mean = rows.mean(0)
    _, s, vt = np.linalg.svd(rows - mean, full_matrices=False)
    std = s / np.sqrt(len(x) - 1)
    assert np.allclose(detector.std.numpy(), std[10:], rtol=1e-4)
    probe = torch.from_numpy(rng.normal(size=(50, 3, 4, 4)).astype(np.float32))
    reference = ((((probe.flatten(1).double().numpy() - mean) @ vt[10:].T) / std[10:]) ** 2).mean(1)
    assert np.allclose(detector.torch_scorer()(probe).numpy(), reference, rtol=1e-3)


# ----------------------------------------------------------------------------- scaling: work
def _python_lines(fn) -> int:
    """Python lines executed inside the advdefense package while `fn` runs: a loop in Python over the inputs
    shows as a count that grows with them (deterministic, unlike a timing)."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if "advdefense" not in frame.f_code.co_filename:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def _naive_roc(neg, pos):
    thresholds = np.unique(np.concatenate([neg, pos]))[::-1]
    return (
        np.array([0.0] + [(neg >= t).mean() for t in thresholds]),
        np.array([0.0] + [(pos >= t).mean() for t in thresholds]),
    )


def test_roc_curve_equals_the_definition_with_ties():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 20, 300).astype(float), rng.integers(5, 30, 200).astype(float)  # many ties
    fpr, tpr = roc_curve(neg, pos)
    ref_fpr, ref_tpr = _naive_roc(neg, pos)
    assert np.array_equal(fpr, ref_fpr) and np.array_equal(tpr, ref_tpr)
    assert fpr[-1] == tpr[-1] == 1.0


def test_roc_curve_work_does_not_grow_with_the_scores():
    """One comparison pass per threshold made the ROC of a pooled full-size detector (14 000 scores) take
    2 x 10^8 comparisons; its Python-level work grew with every score."""
    rng = np.random.default_rng(0)
    lines = {
        n: _python_lines(lambda n=n: roc_curve(rng.normal(size=n), rng.normal(1, 1, n)))
        for n in (100, 10_000)
    }
    assert lines[10_000] == lines[100], lines


# ----------------------------------------------------------------------------- the estimate
def test_the_estimate_holds_for_the_full_size_run(tmp_path):
    """`advdefense-estimate` on config/cifar10-full.yaml (against a stand-in of the full-size data's image counts)
    is within 1.5x of the wall time measured per stage in the full-size run (benchmarks/results/full-size-cpu.csv,
    written by benchmarks/job_table.py from that run's benchmark files)."""
    import pandas as pd

    from advdefense.estimate import estimate_seconds

    measured = pd.read_csv(REPO / "benchmarks/results/full-size-cpu.csv").set_index("stage")["measured_s"]
    standin = write_cifar_standin(tmp_path / "data", train_per_batch=10_000, test=9_000, zeros=True)
    cfg = full_config()
    cfg["dataset"]["path"] = str(standin)
    cfg["corruptions"] = {"names": None}  # the measured run had no corruption stage (issue 43 came after it)
    # nor feature squeezing, Mahalanobis and LID (issues 24 and 44): the detectors it ran (commit 584e42a)
    cfg["detection"]["methods"] = [
        "latent_mlp",
        "pixel_cnn",
        "pca",
        "magnet",
        "magnet_jsd",
        "bits_per_dim",
        "offgrid",
    ]
    estimate = estimate_seconds(validate_config(cfg), cores=2)
    ratios = {stage: measured[stage] / estimate[stage] for stage in measured.index if measured[stage] >= 60}
    assert set(ratios) >= {"classifier", "flow training", "attacks", "detectors"}
    assert all(1 / 1.5 <= r <= 1.5 for r in ratios.values()), ratios
    assert 1 / 1.2 <= measured.sum() / sum(estimate.values()) <= 1.2


def test_a_detector_fitted_once_is_scored_once(tmp_path, monkeypatch):
    """An unsupervised detector is the same for every training key; it was scored again for each (13 times in
    the full-size run: 12 minutes of the MagNet JSD job). Its scoring work must not grow with the keys, and every
    key still gets its rows."""
    from advdefense.detection import AttackedSet, DetectionInputs, SplitInputs, run_detection_method
    from advdefense.detectors import OffGridPixels
    from advdefense.plan.jobs import DetectionJob

    rng = np.random.default_rng(0)

    def split(keys):
        clean = np.round(rng.random((40, 3, 4, 4)) * 255) / 255
        attacks = {
            k: AttackedSet(
                clean + 0.01, np.zeros(40, int), np.zeros(40, int), np.ones(40, int), np.ones(40, bool)
            )
            for k in keys
        }
        return SplitInputs(clean.astype(np.float32), np.arange(40), attacks)

    calls = []
    original = OffGridPixels.score
    monkeypatch.setattr(
        OffGridPixels,
        "score",
        lambda self, x, batch_size=500: calls.append(len(x)) or original(self, x, batch_size),
    )
    counts = {}
    for n in (2, 6):
        keys = [f"a{i}_eps0.03" for i in range(n)]
        calls.clear()
        calibration = np.round(rng.random((200, 3, 4, 4)) * 255).astype(np.float32) / 255
        table, _ = run_detection_method(
            DetectionJob("offgrid", {}, fprs=(0.05,)),
            DetectionInputs(split(keys), split(keys), calibration),
            tmp_path / str(n),
        )
        counts[n] = len(calls)
        assert set(table["train"]) == set(keys) | {"overall"}
        assert (
            table.groupby("train")["auroc"].apply(tuple).nunique() == 1
        )  # the same detector, the same numbers
    assert counts[6] == counts[2] + 4  # once per test key more, not once per (training key x test key)


def test_the_full_size_positive_control_is_fast_at_on_every_image_under_autoattack(tmp_path):
    """config/full-positive-control.yaml (issue 45): the same ResNet-20 recipe with fast adversarial training on all
    the training images, attacked at the paper's 0.02 and at 8/255 (AutoAttack: RobustBench's threat model) on the
    test split; its own run name, so it never touches the main full-size run's files."""
    cfg = yaml.safe_load((REPO / "config/full-positive-control.yaml").read_text())
    full = full_config()
    assert cfg["classifier"]["training"] == "fast_at" and cfg["dataset"].get("train_size") is None
    for key in ("depth", "width", "optimizer", "augment", "precision"):
        assert cfg["classifier"][key] == full["classifier"][key]  # only the training method differs
    assert cfg["dataset"]["name"] != full["dataset"]["name"]
    assert cfg["dataset"]["calibration_size"] == full["dataset"]["calibration_size"]  # the same 48 000 images
    assert cfg["attacks"]["autoattack"]["params"]["version"] == "standard"
    assert cfg["attacks"]["autoattack"]["epsilons"] == pytest.approx([0.02, 8 / 255], abs=5e-9)
    cfg["dataset"]["path"] = str(write_cifar_standin(tmp_path / "data", train_per_batch=1000, test=2000))
    configfile = tmp_path / "pc.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, configfile, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert (
        counts["train_classifier"] == 1 and counts["attack"] == 6
    )  # three attacks at two epsilons, test only
    assert "train_flow" not in counts and "detect" not in counts and "purify_attack" not in counts
    assert "results/classifier/cifar10-jpeg-robust/model.pt" in proc.stdout
