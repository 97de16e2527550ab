"""One module per file kind (issue 42): what a job writes through a kind's writer its readers get back as a typed
record, and a file that is not one is refused with its name and the cause. The detector score file
(advdefense.score_files) and the purified file (advdefense.purified_files) here; the attack file's in
test_attacks.py and test_bad_input_3.py, the latents file's in test_flow.py."""

import h5py
import numpy as np
import pytest

from advdefense.errors import PipelineFileError
from advdefense.h5io import atomic_h5
from advdefense.latent_files import read_latents
from advdefense.purified_files import PurifiedFileWriter, read_purified
from advdefense.score_files import read_all_scores, read_scores, scores_path, write_scores


def _scores(rng, n=50):
    return {
        "calibration": rng.normal(size=n),
        "clean": rng.normal(size=n),
        "pgd_eps0.02": rng.normal(2.0, 1.0, size=n),
        "noise_sign_eps0.02": rng.normal(size=n).astype(np.float32),
    }


def test_written_scores_read_back_with_thresholds_by_rate(tmp_path):
    rng = np.random.default_rng(0)
    scores = _scores(rng)
    thresholds = {0.01: 2.3, 0.05: 1.6}
    write_scores(tmp_path, "pgd_eps0.02", thresholds, scores)
    write_scores(tmp_path, "overall", {0.05: 1.5}, scores)
    back = read_scores(tmp_path, "pgd_eps0.02")
    assert back.key == "pgd_eps0.02" and back.path == scores_path(tmp_path, "pgd_eps0.02")
    assert back.thresholds == thresholds
    assert back.threshold(0.05) == 1.6 and back.largest_fpr_threshold == 1.6
    for name, values in scores.items():
        np.testing.assert_array_equal(back.of(name), values)
        assert back.of(name).dtype == values.dtype
    assert list(read_all_scores(tmp_path)) == ["overall", "pgd_eps0.02"]
    assert not list(tmp_path.glob("*tmp*"))  # no temporary left beside them
    with pytest.raises(
        PipelineFileError, match=r"scores_overall.npz: no threshold at a false-positive rate of 0.01"
    ):
        read_all_scores(tmp_path)["overall"].threshold(0.01)
    with pytest.raises(PipelineFileError, match=r"no scores of 'fgsm_eps0.02'"):
        back.of("fgsm_eps0.02")


def test_writer_refuses_scores_without_the_clean_sets(tmp_path):
    rng = np.random.default_rng(1)
    scores = _scores(rng)
    del scores["calibration"]
    with pytest.raises(ValueError, match="lack calibration"):
        write_scores(tmp_path, "overall", {0.05: 1.0}, scores)
    with pytest.raises(ValueError, match="no threshold"):
        write_scores(tmp_path, "overall", {}, _scores(rng))
    assert not list(tmp_path.iterdir())


def test_reader_refuses_files_that_are_not_score_files(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(PipelineFileError, match=r"no detector scores \(scores_\*.npz\)"):
        read_all_scores(tmp_path)
    with pytest.raises(PipelineFileError, match=r"scores_overall.npz: no such score file"):
        read_scores(tmp_path, "overall")
    # an object array (unpickling runs code): refused, never loaded
    np.savez(scores_path(tmp_path, "overall"), threshold_fpr5=1.0, clean=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PipelineFileError, match="not a score file"):
        read_scores(tmp_path, "overall")
    # a half-written file that lacks the calibration scores
    np.savez(scores_path(tmp_path, "overall"), threshold_fpr5=1.0, clean=rng.normal(size=5))
    with pytest.raises(PipelineFileError, match="incomplete score file"):
        read_scores(tmp_path, "overall")
    # scores that are not one number per image
    np.savez(
        scores_path(tmp_path, "overall"),
        threshold_fpr5=1.0,
        clean=rng.normal(size=(5, 2)),
        calibration=rng.normal(size=5),
    )
    with pytest.raises(
        PipelineFileError, match=r"scores of 'clean' are not one float per image \(shape \(5, 2\)"
    ):
        read_scores(tmp_path, "overall")
    np.savez(
        scores_path(tmp_path, "overall"),
        threshold_fpr5=np.nan,
        clean=rng.normal(size=5),
        calibration=rng.normal(size=5),
    )
    with pytest.raises(PipelineFileError, match="threshold_fpr5 is not one finite number"):
        read_scores(tmp_path, "overall")


def _source(n, rng):
    label = rng.integers(0, 10, n)
    pred_adv = np.where(rng.random(n) < 0.7, (label + 1) % 10, label)
    return {
        "index": np.arange(n) * 2,
        "label": label,
        "pred_clean": label.copy(),
        "pred_adv": pred_adv,
        "success": pred_adv != label,
    }


def _write_purified(path, source, kind="attack", batches=2):
    n = len(source["index"])
    with atomic_h5(path) as f:
        writer = PurifiedFileWriter(f, kind, source)
        for start in range(0, n, n // batches):
            end = min(n, start + n // batches)
            writer.write(
                start, np.full((end - start, 3, 32, 32), 0.5, np.float32), source["label"][start:end]
            )
        writer.finish({"split": "test", "purifier": "median", "attack": "pgd", "epsilon": 0.03})


def test_purified_file_written_in_batches_reads_back_typed(tmp_path):
    rng = np.random.default_rng(0)
    source = _source(40, rng)
    _write_purified(tmp_path / "p.h5", source)
    p = read_purified(tmp_path / "p.h5")
    assert (
        p.kind == "attack"
        and p.purifier == "median"
        and len(p) == 40
        and p.attrs["format"].startswith("advdefense")
    )
    for name, values in source.items():
        np.testing.assert_array_equal(getattr(p, name), values)
    assert p.right.all()  # the toy classifier is right on every purified image
    clean = {k: source[k] for k in ("index", "label", "pred_clean")}
    _write_purified(tmp_path / "c.h5", clean, kind="clean")
    c = read_purified(tmp_path / "c.h5")
    assert c.kind == "clean" and c.pred_adv is None and c.success is None


def test_purified_writer_leaves_nothing_when_a_batch_is_missing(tmp_path):
    source = _source(40, np.random.default_rng(1))
    with pytest.raises(RuntimeError, match="purified 20 of 40 images"), atomic_h5(tmp_path / "p.h5") as f:
        writer = PurifiedFileWriter(f, "attack", source)
        writer.write(0, np.zeros((20, 3, 32, 32), np.float32), source["label"][:20])
        writer.finish({})
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="of kind clean holds index, label, pred_clean"):
        PurifiedFileWriter(None, "clean", source)


def test_purified_reader_refuses_files_that_lie(tmp_path):
    rng = np.random.default_rng(2)
    source = _source(40, rng)
    _write_purified(tmp_path / "p.h5", source)
    with h5py.File(tmp_path / "p.h5", "r+") as f:
        f["success"][0] = not f["success"][0]
    with pytest.raises(
        PipelineFileError, match=r"p.h5: 'success' disagrees with pred_adv != label for 1 of 40"
    ):
        read_purified(tmp_path / "p.h5")
    _write_purified(tmp_path / "q.h5", source)
    with h5py.File(tmp_path / "q.h5", "r+") as f:
        del f["pred_purified"]
        f.create_dataset("pred_purified", data=np.zeros(39, np.int64))
    with pytest.raises(PipelineFileError, match=r"q.h5: datasets differ in length"):
        read_purified(tmp_path / "q.h5")
    with h5py.File(tmp_path / "q.h5", "r+") as f:
        f.attrs["kind"] = "mystery"
    with pytest.raises(PipelineFileError, match=r"q.h5: purified file of unknown kind 'mystery'"):
        read_purified(tmp_path / "q.h5")
    with h5py.File(tmp_path / "q.h5", "r+") as f:
        f.attrs["format"] = "advdefense-attack-v1"
    with pytest.raises(PipelineFileError, match="not a purified file of this pipeline"):
        read_purified(tmp_path / "q.h5")


def test_latents_file_reads_back_typed_and_an_attacks_must_say_what_the_attack_did(tmp_path):
    from advdefense.latent_files import write_latents

    rng = np.random.default_rng(3)
    n = 12
    z = rng.normal(size=(n, 48, 4, 4)).astype(np.float32)
    bpd = rng.uniform(3, 5, n).astype(np.float32)
    source = {"index": np.arange(n), "label": rng.integers(0, 10, n)}
    attack = {
        **source,
        "success": np.ones(n, bool),
        "pred_clean": source["label"],
        "pred_adv": (source["label"] + 1) % 10,
        "linf": np.full(n, 0.02, np.float32),
    }
    batches = lambda: [(z[:8], bpd[:8]), (z[8:], bpd[8:])]  # noqa: E731
    write_latents(tmp_path / "a.h5", (48, 4, 4), n, batches(), attack, {"kind": "attack", "attack": "pgd"})
    a = read_latents(tmp_path / "a.h5")
    assert a.kind == "attack" and len(a) == n and a.attrs["attack"] == "pgd"
    np.testing.assert_array_equal(a.z, z)
    assert a.field("bpd").shape == (n, 1) and a.field("bpd").dtype == np.float32
    np.testing.assert_array_equal(a.pred_adv, attack["pred_adv"])
    # an attack's latents without the norms (an older version's file): refused, with what to do
    write_latents(tmp_path / "old.h5", (48, 4, 4), n, batches(), {k: v for k, v in attack.items() if k != "linf"},
                  {"kind": "attack", "attack": "pgd"})  # fmt: skip
    with pytest.raises(
        PipelineFileError, match=r"old.h5: missing dataset\(s\) linf \(written by an older version"
    ):
        read_latents(tmp_path / "old.h5")
    write_latents(tmp_path / "c.h5", (48, 4, 4), n, batches(), source, {"kind": "clean"})
    c = read_latents(tmp_path / "c.h5")
    assert c.kind == "clean" and c.linf is None and c.field("z").shape == (n, 48, 4, 4)
