"""Natural corruptions (issue 43): the published CIFAR-10-C definitions and parameters, the corrupted-images file
and its checks, the three tables, and the smoke run's corruption stage."""

from __future__ import annotations

import copy
from io import BytesIO

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.corrupted_files import read_corrupted_file, write_corrupted_file
from advdefense.corruption_evaluation import corruption_accuracy, false_alarm_table
from advdefense.corruptions import CORRUPTIONS, IDENTITY, PARAMETERS, SEVERITIES, corrupt_images
from advdefense.data import load_cifar_batches_dir, read_split
from advdefense.detection import AttackedSet, SplitInputs, calibrate, evaluate_detector
from advdefense.errors import PipelineFileError
from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.names import POOLED, corruption_key
from conftest import REPO

SMOKE = "synthetic-smoke"


@pytest.fixture(scope="module")
def cifar(mini_cifar):
    """200 real CIFAR-10 test images (N x 3 x 32 x 32 uint8)."""
    return load_cifar_batches_dir(mini_cifar).test.images[:200]


def test_the_fifteen_are_cifar10c_with_its_published_parameters():
    assert len(CORRUPTIONS) == 15 and set(PARAMETERS) == set(CORRUPTIONS)
    assert all(len(PARAMETERS[name]) == 5 for name in CORRUPTIONS)
    # a few of make_cifar_c.py's values (ImageNet-C's, in imagecorruptions, differ: 0.08 / 25 / 0.4)
    assert PARAMETERS["gaussian_noise"][0] == 0.04 and PARAMETERS["jpeg_compression"] == [80, 65, 58, 50, 40]
    assert PARAMETERS["contrast"][-1] == 0.15


def test_noise_has_the_published_spread_and_digital_corruptions_are_exact():
    grey = np.full((50, 3, 32, 32), 128, np.uint8)  # far from the clipping bounds
    for severity in SEVERITIES:
        diff = corrupt_images(grey, "gaussian_noise", severity, 0).astype(float) - 128
        sigma = PARAMETERS["gaussian_noise"][severity - 1] * 255
        assert abs(diff.std() - sigma) < 0.05 * sigma
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)
    for severity in (1, 5):
        c = PARAMETERS["contrast"][severity - 1]
        x = images / 255.0
        mean = x.mean(axis=(2, 3), keepdims=True)
        expected = np.uint8(np.clip((x - mean) * c + mean, 0, 1) * 255)
        assert np.array_equal(corrupt_images(images, "contrast", severity, 0), expected)
        q = PARAMETERS["jpeg_compression"][severity - 1]
        for image, out in zip(images, corrupt_images(images, "jpeg_compression", severity, 0)):
            buffer = BytesIO()
            Image.fromarray(image.transpose(1, 2, 0)).save(buffer, "JPEG", quality=q)
            assert np.array_equal(out, np.asarray(Image.open(buffer)).transpose(2, 0, 1))


def test_every_corruption_runs_is_seeded_and_severity_raises_the_change_on_average(cifar):
    images = cifar[:40]
    change = np.zeros((len(CORRUPTIONS), 5))
    for i, name in enumerate(CORRUPTIONS):
        for severity in SEVERITIES:
            out = corrupt_images(images, name, severity, seed=3)
            assert out.dtype == np.uint8 and out.shape == images.shape
            assert np.array_equal(out, corrupt_images(images, name, severity, seed=3))  # seeded
            change[i, severity - 1] = np.abs(out.astype(float) - images).mean()
        assert change[i].max() > 0.5, name  # every corruption changes the images (in 8-bit steps)
    assert np.all(np.diff(change.mean(0)) > 0), change.mean(0)
    assert np.array_equal(corrupt_images(images, IDENTITY, 1, 0), images)
    with pytest.raises(ConfigError, match="unknown corruption 'rain'"):
        corrupt_images(images, "rain", 1, 0)


def test_corrupted_file_round_trip_and_the_files_that_lie(cifar, tmp_path):
    index, labels = np.arange(10, 30), np.arange(20) % 10
    path = tmp_path / "c.h5"
    write_corrupted_file(path, cifar[:20], labels, index, "fog", [1, 3], 0, "data.h5")
    f = read_corrupted_file(path, expect_corruption="fog", labels_of=lambda i: labels[i - 10])
    assert f.severities == (1, 3) and np.array_equal(f.index, index)
    assert np.array_equal(f.images(3), corrupt_images(cifar[:20], "fog", 3, 0))
    assert np.array_equal(f.rows_of(np.array([12, 29])), [2, 19])
    with pytest.raises(PipelineFileError, match="no severity 2"):
        f.images(2)
    with pytest.raises(PipelineFileError, match="not in the file"):
        f.rows_of(np.array([5]))
    with pytest.raises(PipelineFileError, match="holds corruption 'fog', not 'snow'"):
        read_corrupted_file(path, expect_corruption="snow")
    with pytest.raises(PipelineFileError, match="labels are not the dataset's"):
        read_corrupted_file(path, labels_of=lambda i: (labels[i - 10] + 1) % 10)
    with h5py.File(path, "a") as h:
        h.attrs["severities"] = np.array([1, 7])
    with pytest.raises(PipelineFileError, match="not distinct values of 1..5"):
        read_corrupted_file(path)
    with h5py.File(path, "a") as h:
        h.attrs["severities"] = np.array([1, 3, 4])
    with pytest.raises(PipelineFileError, match="expected"):
        read_corrupted_file(path)


class _FlagsAllButClean:
    """A detector that scores the clean images 0 and everything else by its distance to them."""

    def __init__(self, clean):
        self.clean = clean

    def score(self, x):
        return np.abs(x[:, None, :] - self.clean[None]).sum(-1).min(1)


def test_a_detector_that_flags_everything_has_false_alarm_rate_one(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.random((200, 4)).astype(np.float32)
    detector = _FlagsAllButClean(clean)
    thresholds = calibrate(detector.score(clean), [0.01, 0.05])
    corrupted = {corruption_key("fog", s): clean + 0.1 * s for s in (1, 5)}
    n = len(clean)
    attacked = AttackedSet(
        clean + 0.05, np.zeros(n, int), np.zeros(n, int), np.ones(n, int), np.ones(n, bool)
    )
    test = SplitInputs(clean, np.arange(n), {"pgd_eps0.03": attacked})
    rows = evaluate_detector(detector, test, thresholds, {}, {}, corrupted)
    evaluation = tmp_path / "evaluation.csv"
    pd.DataFrame(rows).assign(train=POOLED).to_csv(evaluation, index=False)
    table = false_alarm_table({"flags_all": evaluation}, ["fog"], [1, 5])
    assert (table["false_alarms"] == 100).all() and (table[["s1", "s5"]] == 100).all().all()
    assert set(table["calibrated_fpr_percent"]) == {1, 5} and set(table["detected_attacks"]) == {100}


def test_identity_corruption_gives_the_clean_accuracy(smoke_run, tmp_path):
    data, model = smoke_run / f"results/data/{SMOKE}.h5", smoke_run / f"results/classifier/{SMOKE}/model.pt"
    split = read_split(data, "test")
    index = np.arange(0, len(split), 2)[:120]
    path = tmp_path / "identity.h5"
    write_corrupted_file(path, split.images[index], split.labels[index], index, IDENTITY, [1], 0, data)
    table = corruption_accuracy(data, model, {IDENTITY: path}, [], tmp_path / "accuracy.csv", device="cpu")
    by = table.set_index("corruption")["accuracy"]
    assert by[IDENTITY] == by["clean"] > 0.5


def test_smoke_run_writes_the_three_tables(smoke_run):
    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    names, severities = cfg["corruptions"]["names"], sorted(cfg["corruptions"]["severities"])
    tables = smoke_run / f"results/tables/{SMOKE}"
    classifier = pd.read_csv(tables / "corruption_classifier.csv").set_index("corruption")
    assert list(classifier.index) == [*names, "mean"]
    clean = pd.read_csv(tables / "corruption_accuracy.csv")
    assert (classifier["clean"] > 80).all()  # the smoke classifier on the same images uncorrupted
    # the harshest severity costs more than the mildest, on average over the corruptions
    assert classifier.loc["mean", f"s{severities[-1]}"] < classifier.loc["mean", f"s{severities[0]}"]
    purifiers = pd.read_csv(tables / "corruption_purifiers.csv")
    assert set(purifiers["purifier"]) == set(cfg["purification"]["methods"])
    assert set(clean["through"]) == {"none", *cfg["purification"]["methods"]}
    alarms = pd.read_csv(tables / "corruption_false_alarms.csv")
    assert set(alarms["detector"]) == set(cfg["detection"]["methods"]) and set(alarms["detector"]) <= set(
        DETECTORS
    )
    assert alarms[["false_alarms", "detected_attacks"]].stack().between(0, 100).all()
    # the zero-parameter off-grid detector never flags a corrupted image: they are on the 8-bit grid
    assert (alarms.loc[alarms["detector"] == "offgrid", "false_alarms"] == 0).all()
    assert "RobustBench's corruptions accuracy" in (tables / "corruptions.md").read_text()


def test_config_names_a_bad_corruption_or_severity(smoke_config):
    from advdefense.plan.decisions import seed_tables

    # with seeds, the three tables are gathered into mean and sd like every table
    assert {"corruption_classifier", "corruption_purifiers", "corruption_false_alarms"} <= set(
        seed_tables(validate_config(copy.deepcopy(smoke_config)))
    )
    smoke_config["corruptions"]["names"] = ["gaussian_noise", "rain"]
    with pytest.raises(ConfigError, match="corruptions.names"):
        validate_config(smoke_config)
    smoke_config["corruptions"]["names"] = ["fog"]
    smoke_config["corruptions"]["severities"] = [1, 6]
    with pytest.raises(ConfigError, match="corruptions.severities"):
        validate_config(smoke_config)
    smoke_config["corruptions"].update({"severities": [1], "images": 501})
    assert validate_config(smoke_config)["corruptions"]["images"] == 501  # at most: all 500 attacked ones
    del smoke_config["corruptions"]
    assert validate_config(smoke_config)["corruptions"]["names"] is None  # old configs: no corruption stage


def test_detectors_measure_false_alarms_on_the_corrupted_images_a_subset_file_holds(cifar, tmp_path):
    from advdefense.detection import _corruption_inputs

    index, labels = np.arange(100, 140), np.arange(40) % 10
    path = tmp_path / "snow.h5"
    write_corrupted_file(path, cifar[:20], labels[:20], index[:20], "snow", [2], 0, "data.h5")  # the first 20
    evaluated = index[::2]  # the detector evaluates every other attacked image: 10 of them are in the file
    out = _corruption_inputs("pixels", {"corrupted__snow": path}, evaluated, labels[::2], {}, 10, "cpu")
    assert list(out) == [corruption_key("snow", 2)]
    expected = corrupt_images(cifar[:20], "snow", 2, 0)[::2].astype(np.float32) / 255.0
    assert np.array_equal(out[corruption_key("snow", 2)], expected)
    with pytest.raises(PipelineFileError, match="labels are not the dataset's"):
        _corruption_inputs("pixels", {"corrupted__snow": path}, evaluated, labels[::2] + 1, {}, 10, "cpu")


def test_robustbench_corruptions_acc_is_the_mean_over_all_fifteen_at_five_severities(tmp_path):
    from advdefense.robustbench_info import corruptions_accuracy

    rows = [{"through": "none", "corruption": "clean", "severity": 0, "n": 100, "accuracy": 0.9}]
    for name in CORRUPTIONS:
        for s in SEVERITIES:
            rows.append(
                {"through": "none", "corruption": name, "severity": s, "n": 100, "accuracy": 0.8 - 0.02 * s}
            )
            rows.append({"through": "jpeg", "corruption": name, "severity": s, "n": 100, "accuracy": 0.1})
    path = tmp_path / "accuracy.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert corruptions_accuracy(path) == {"accuracy": pytest.approx(0.74), "n_test_images": 100}
    pd.DataFrame(rows[:-10]).to_csv(path, index=False)  # one corruption short of a severity: no such number
    assert corruptions_accuracy(path) is None
