import pickle

import h5py
import numpy as np
import pytest

from advdefense.config import ConfigError
from advdefense.data import (
    DataError,
    build_dataset,
    load_cifar_batches_dir,
    make_synthetic,
    read_dataset_h5,
    take_subset,
    write_dataset_h5,
)


def test_synthetic_is_deterministic_balanced_and_well_formed():
    a = make_synthetic(200, 50, seed=3)
    b = make_synthetic(200, 50, seed=3)
    c = make_synthetic(200, 50, seed=4)
    assert np.array_equal(a.train.images, b.train.images) and np.array_equal(a.test.labels, b.test.labels)
    assert not np.array_equal(a.train.images, c.train.images)
    assert a.train.images.shape == (200, 3, 32, 32) and a.train.images.dtype == np.uint8
    assert a.test.images.shape == (50, 3, 32, 32)
    counts = np.bincount(np.concatenate([a.train.labels, a.test.labels]), minlength=10)
    assert counts.min() == counts.max() == 25
    assert a.train.images.std() > 20  # not blank images


def test_synthetic_classes_differ_in_frequency_content():
    """Class identity lives in the grating frequency: the mean high-frequency energy rises with k % 5."""
    ds = make_synthetic(1000, 10, seed=0, noise=0.0)
    x = ds.train.images.astype(np.float64).mean(1)
    energy = np.abs(np.diff(x, axis=2)).mean(axis=(1, 2))
    means = [energy[ds.train.labels % 5 == f].mean() for f in range(5)]
    assert all(a < b for a, b in zip(means, means[1:]))


def test_dataset_round_trips_through_hdf5(tmp_path):
    ds = make_synthetic(120, 40, seed=1)
    path = tmp_path / "d.h5"
    write_dataset_h5(ds, path)
    with h5py.File(path, "r") as f:
        assert f["train/images"].dtype == np.uint8 and f["train/images"].shape == (120, 3, 32, 32)
        assert f["train/labels"].dtype == np.int64
        assert list(f.attrs["class_names"]) == [f"class{k}" for k in range(10)]
        assert f.attrs["source"] == "synthetic"
        assert '"seed": 1' in f.attrs["provenance"]
    back = read_dataset_h5(path)
    assert np.array_equal(back.train.images, ds.train.images)
    assert np.array_equal(back.test.labels, ds.test.labels)
    assert not list(tmp_path.glob("*.tmp-*")), "temporary file left behind"


def test_mini_cifar_round_trip(mini_cifar, tmp_path):
    ds = load_cifar_batches_dir(mini_cifar)
    assert len(ds.train) == 4000 and len(ds.test) == 1000
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    with open(mini_cifar / "data_batch_2", "rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    # image 0 of batch 2 is training image 800; the raw row is R, G, B planes of 32x32
    assert np.array_equal(ds.train.images[800], np.asarray(raw["data"][0]).reshape(3, 32, 32))
    assert ds.train.labels[800] == raw["labels"][0]
    path = tmp_path / "mini.h5"
    write_dataset_h5(ds, path)
    back = read_dataset_h5(path)
    assert np.array_equal(back.test.images, ds.test.images)
    assert back.provenance["source"] == "local"


def test_local_source_with_subsets(mini_cifar):
    ds = build_dataset(
        {"source": "local", "path": str(mini_cifar), "train_size": 500, "test_size": 100}, seed=0
    )
    assert len(ds.train) == 500 and len(ds.test) == 100
    assert np.all(np.diff(ds.train.source_index) > 0)  # kept in source order
    full = load_cifar_batches_dir(mini_cifar)
    assert np.array_equal(ds.train.images[7], full.train.images[ds.train.source_index[7]])


def test_subset_larger_than_split_names_the_key():
    ds = make_synthetic(50, 20)
    with pytest.raises(
        ConfigError, match=r"dataset\.test_size: asked for 30 images but the test split has only 20"
    ):
        take_subset(ds, None, 30, seed=0)


def _write_batches(path, n=4, bad=None):
    path.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        obj = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": list(rng.integers(0, 10, n)),
            "batch_label": name,
            "filenames": [f"{i}.png" for i in range(n)],
        }
        if bad and bad[0] == name:
            obj = bad[1](obj)
        with open(path / name, "wb") as fh:
            pickle.dump(obj, fh)
    with open(path / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    return path


def test_local_directory_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="dataset.path: directory .*nowhere does not exist"):
        load_cifar_batches_dir(tmp_path / "nowhere")
    good = _write_batches(tmp_path / "good")
    assert len(load_cifar_batches_dir(good).train) == 20
    (good / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="missing data_batch_3"):
        load_cifar_batches_dir(good)

    shape = _write_batches(
        tmp_path / "shape", bad=("data_batch_2", lambda o: {**o, "data": o["data"][:, :100]})
    )
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be uint8 N x 3072"):
        load_cifar_batches_dir(shape)
    labels = _write_batches(
        tmp_path / "labels", bad=("test_batch", lambda o: {**o, "labels": o["labels"][:2]})
    )
    with pytest.raises(DataError, match="test_batch: 4 images but 2 labels"):
        load_cifar_batches_dir(labels)
    garbage = _write_batches(tmp_path / "garbage")
    (garbage / "data_batch_5").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="data_batch_5: not a readable CIFAR-10 pickle"):
        load_cifar_batches_dir(garbage)


def test_unknown_source_is_refused():
    with pytest.raises(ConfigError, match="dataset.source: unknown source 'imagenet'"):
        build_dataset({"source": "imagenet"}, seed=0)


def test_download_source_reports_offline_failure_clearly(tmp_path, monkeypatch):
    """The real torchvision download runs; without network it must fail with a clear message."""
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="dataset.root: could not download or verify CIFAR-10"):
        build_dataset({"source": "cifar10", "root": str(tmp_path)}, seed=0)


def test_reading_a_foreign_hdf5_file_is_refused(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["a"] = 1
    with pytest.raises(DataError, match="not a dataset file of this pipeline"):
        read_dataset_h5(path)
