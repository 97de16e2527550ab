import itertools

import numpy as np
import pandas as pd
import pytest

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.errors import PipelineFileError
from advdefense.detection import (POOLED, DetectionSet, load_latent_sets, mmd_power, mmd_test, run_detection_method,
                                  training_arrays)
from advdefense.metrics import auroc, best_threshold, detection_metrics, roc_curve, tpr_at_fpr
from conftest import REPO

D = "synthetic-smoke"
KEYS = ["fgsm_eps0.03", "pgd_eps0.03", "deepfool_eps0.03"]


def test_auroc_known_toy_case():
    # the textbook example: labels [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] -> 0.75
    assert auroc([0.1, 0.4], [0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 0], [1, 1]) == 1.0 and auroc([1, 1], [0, 0]) == 0.0
    assert auroc([1, 2, 3], [1, 2, 3]) == pytest.approx(0.5)  # ties count half


def test_auroc_equals_pairwise_count_and_roc_area():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 1, 60).round(1), rng.normal(0.8, 1, 40).round(1)  # rounding creates ties
    direct = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)])
    assert auroc(neg, pos) == pytest.approx(direct, abs=1e-12)
    fpr, tpr = roc_curve(neg, pos)
    assert np.trapezoid(tpr, fpr) == pytest.approx(direct, abs=1e-12)


def test_threshold_metrics():
    neg = np.arange(100, dtype=float)  # 0..99
    pos = np.arange(90, 190, dtype=float)
    assert tpr_at_fpr(neg, pos, 0.05) == pytest.approx(0.95)  # flag > 94: 5 clean, 95 attacked
    t = best_threshold(neg, pos)
    m = detection_metrics(neg, pos, t)
    assert m["accuracy"] == pytest.approx(0.95) and m["fpr_clean"] + (1 - m["tpr"]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="both classes"):
        auroc([], [1.0])


@pytest.fixture(scope="module")
def smoke(smoke_run):
    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    root = smoke_run / f"results/latents/{D}"
    sets = {split: load_latent_sets(root / f"clean/{split}.h5",
                                    {k: root / f"{k.replace('_eps', '/eps')}/{split}.h5" for k in KEYS})
            for split in ("train", "test")}
    return {"dir": smoke_run, "cfg": cfg, "sets": sets, "tables": smoke_run / f"results/tables/{D}"}


def test_latent_detector_beats_chance_for_fgsm_and_pgd(smoke):
    table = pd.read_csv(smoke["tables"] / "table4_detection.csv", index_col=0)
    for key in ("fgsm_eps0.03", "pgd_eps0.03"):
        assert table.loc[key, "AUROC"] > 0.58, table  # 500 clean + 500 attacked test images: SE of AUROC ~0.02
        assert table.loc[key, "accuracy (%)"] > 55


def test_shuffled_labels_give_chance_auroc(smoke, tmp_path):
    """Training on labels shuffled at random must not find signal on the test split: no leak."""
    rng = np.random.default_rng(0)
    train = smoke["sets"]["train"]["pgd_eps0.03"]
    both = np.concatenate([train.clean, train.attacked])
    perm = rng.permutation(len(both))
    shuffled = {"pgd_eps0.03": DetectionSet(both[perm[: len(train.clean)]], both[perm[len(train.clean):]],
                                            train.success)}
    cfg = smoke["cfg"]
    table = run_detection_method("latent_mlp", cfg["detection"]["latent_mlp"], cfg["seed"], shuffled,
                                 {"pgd_eps0.03": smoke["sets"]["test"]["pgd_eps0.03"]}, tmp_path, device="cpu")
    row = table[(table["train"] == "pgd_eps0.03") & (table["test"] == "pgd_eps0.03")].iloc[0]
    assert abs(row["auroc"] - 0.5) < 0.08


def test_tables_have_configured_rows_and_columns(smoke):
    t4 = pd.read_csv(smoke["tables"] / "table4_detection.csv", index_col=0)
    assert list(t4.index) == KEYS + [POOLED] and POOLED == "overall"
    assert list(t4.columns) == ["accuracy (%)", "AUROC", "TPR at 5% FPR (%)", "FPR on clean (%)",
                                "detected, successful adv. (%)", "detected, failed adv. (%)", "attacked test images"]
    assert t4.loc[POOLED, "attacked test images"] == 1500
    t5 = pd.read_csv(smoke["tables"] / "table5_comparison.csv", index_col=0)
    assert len(t5) == 5 and t5.index[0].startswith("Glow latent") and "Kernel MMD" in t5.index[-1]
    assert list(t5.columns) == [f"{k} {m}" for k in KEYS + [POOLED] for m in ("acc (%)", "AUROC")]
    gen = pd.read_csv(smoke["tables"] / "detection_generalisation.csv", index_col=0)
    assert sorted(gen.index) == sorted(KEYS + [POOLED]) and sorted(gen.columns) == sorted(KEYS + [POOLED])
    evaluation = pd.read_csv(smoke["dir"] / f"results/detection/{D}/latent_mlp/evaluation.csv")
    assert len(evaluation) == 4 * 4  # 3 per-attack detectors + pooled, each tested on 3 attacks + pooled


def test_bad_detection_inputs(smoke, tmp_path):
    import h5py

    root = smoke["dir"] / f"results/latents/{D}"
    odd = tmp_path / "odd.h5"
    with h5py.File(root / "pgd/eps0.03/test.h5", "r") as f, h5py.File(odd, "w") as g:
        for k in f:
            g[k] = f[k][()]
        del g["z"]
        g["z"] = np.zeros((500, 24, 8, 8), np.float32)
        g.attrs.update(dict(f.attrs))
    with pytest.raises(PipelineFileError, match=r"odd\.h5: latents of shape \(24, 8, 8\) cannot be mixed with"):
        load_latent_sets(root / "clean/test.h5", {"pgd_eps0.03": odd})
    with pytest.raises(PipelineFileError, match=r"latent file .*cw/eps0\.5/test\.h5 does not exist"):
        load_latent_sets(root / "clean/test.h5", {"cw_eps0.5": root / "cw/eps0.5/test.h5"})
    empty = {"pgd_eps0.03": DetectionSet(np.zeros((0, 48, 4, 4)), np.zeros((0, 48, 4, 4)), np.zeros(0, bool))}
    with pytest.raises(ConfigError, match="training set for pgd_eps0.03 is empty or has one class"):
        run_detection_method("latent_mlp", smoke["cfg"]["detection"]["latent_mlp"], 0, empty, empty, tmp_path)
    x, y = training_arrays(smoke["sets"]["train"], POOLED)
    assert len(x) == 4 * 500 and y.sum() == 3 * 500


def test_mmd_test_level_and_power():
    rng = np.random.default_rng(0)
    import torch

    g = torch.Generator().manual_seed(0)
    same = [mmd_test(rng.normal(size=(20, 10)), rng.normal(size=(20, 10)), 100, g) for _ in range(60)]
    assert 0.0 <= np.mean(np.array(same) < 0.05) <= 0.15  # level ~ alpha under the null
    shifted = [mmd_test(rng.normal(size=(20, 10)), rng.normal(1.0, 1, size=(20, 10)), 100, g) for _ in range(20)]
    assert np.mean(np.array(shifted) < 0.05) >= 0.9
    table = mmd_power(rng.normal(size=(100, 5)), rng.normal(size=(100, 5)), {"shift": rng.normal(2, 1, (100, 5))},
                      [5, 10], trials=10, permutations=50, alpha=0.05, seed=0)
    power = table.set_index(["test", "batch_size"])["rejection_rate"]
    assert power[("shift", 10)] >= 0.9 and power[("clean", 10)] <= 0.3


def test_detector_training_does_not_depend_on_process_state(smoke, tmp_path):
    """Each detector's initial weights come from the configured seed, not from whatever ran before."""
    sets = {"pgd_eps0.03": smoke["sets"]["train"]["pgd_eps0.03"]}
    test = {"pgd_eps0.03": smoke["sets"]["test"]["pgd_eps0.03"]}
    settings = {**smoke["cfg"]["detection"]["latent_mlp"], "epochs": 2}
    import torch

    torch.manual_seed(1)
    first = run_detection_method("latent_mlp", settings, 0, sets, test, tmp_path / "a", device="cpu")
    torch.rand(1000)  # disturb the global generator
    torch.manual_seed(12345)
    second = run_detection_method("latent_mlp", settings, 0, sets, test, tmp_path / "b", device="cpu")
    pd.testing.assert_frame_equal(first, second)
