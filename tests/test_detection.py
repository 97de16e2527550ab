import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.detection import (
    POOLED,
    AttackedSet,
    DetectionInputs,
    SplitInputs,
    calibrate,
    load_latent_inputs,
    mmd_power,
    mmd_test,
    noise_images,
    run_detection_method,
    training_arrays,
)
from advdefense.detectors import LN2, Detector, register, unregister
from advdefense.errors import PipelineFileError
from advdefense.metrics import auroc, roc_curve
from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.jobs import DetectionJob, detection_job
from advdefense.score_files import read_scores
from conftest import REPO

D = "synthetic-smoke"
KEYS = ["fgsm_eps0.03", "pgd_eps0.03", "deepfool_eps0.03", "pgd_8bit_eps0.03"]


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
    from advdefense.detection import threshold_metrics

    neg = np.arange(100, dtype=float)  # 0..99
    pos = np.arange(90, 190, dtype=float)
    m = threshold_metrics(neg, pos, {0.05: 94.0})  # flag > 94: 5 clean, 95 attacked
    assert m["tpr_at_fpr5"] == pytest.approx(0.95) and m["fpr_test_at_fpr5"] == pytest.approx(0.05)
    assert m["accuracy"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="both classes"):
        auroc([], [1.0])


@pytest.fixture(scope="module")
def smoke(smoke_run):
    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    root = smoke_run / f"results/latents/{D}"
    files = {k: root / f"{k.rsplit('_eps', 1)[0]}/eps{k.rsplit('_eps', 1)[1]}" for k in KEYS}
    sets = {
        split: load_latent_inputs(
            root / f"clean/{split}.h5", {k: f / f"{split}.h5" for k, f in files.items()}
        )
        for split in ("train", "test")
    }
    return {
        "dir": smoke_run,
        "cfg": cfg,
        "sets": sets,
        "tables": smoke_run / f"results/tables/{D}",
        "detection": smoke_run / f"results/detection/{D}",
    }


def _attacked(x, label, pred_clean, pred_adv, changed):
    return AttackedSet(
        np.asarray(x, np.float32),
        np.asarray(label),
        np.asarray(pred_clean),
        np.asarray(pred_adv),
        np.asarray(changed, bool),
    )


def test_noop_adversarials_are_never_labelled_attacked(tmp_path):
    """DeepFool returns misclassified images unchanged: such copies (and failed or unchanged ones) are not
    'attacked' in the honest sets, neither for training nor for testing; the all-images rows count them."""
    clean = np.arange(6, dtype=np.float32)[:, None]
    adv = clean.copy()
    adv[[0, 1]] += 10  # changed and successful; image 2: unchanged copy of a misclassified clean image
    s = _attacked(adv, [0] * 6, [0, 0, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 1, 1])
    assert s.success.tolist() == [True, True, True, False, False, False]
    assert s.honest.tolist() == [True, True, False, False, False, False]
    x, y = training_arrays(SplitInputs(clean, np.arange(6), {"deepfool_eps0.1": s}), "deepfool_eps0.1")
    attacked = x[y == 1]
    assert len(attacked) == 2 and not any((attacked == c).all() for c in clean)  # no clean copy labelled 1
    split = SplitInputs(clean, np.arange(6), {"deepfool_eps0.1": s})
    rows, _ = run_detection_method(
        DetectionJob("offgrid", {}, fprs=(0.05,)),
        DetectionInputs(split, split, np.zeros((200, 1), np.float32)),
        tmp_path,
    )
    honest = rows[(rows["test"] == "deepfool_eps0.1") & (rows["set"] == "honest")].iloc[0]
    everything = rows[(rows["test"] == "deepfool_eps0.1") & (rows["set"] == "all")].iloc[0]
    assert honest["n_attacked"] == 2 and everything["n_attacked"] == 6 and everything["n_noop"] == 1


def test_attacked_set_without_successes_is_a_clear_error():
    clean = np.zeros((4, 1), np.float32)
    s = _attacked(clean + 1, [0] * 4, [0] * 4, [0] * 4, [1] * 4)  # changed, never fooled the classifier
    with pytest.raises(
        ConfigError, match="fgsm_eps0.01 has no successful adversarials .*4 of 4 changed, 0 mis"
    ):
        training_arrays(SplitInputs(clean, np.arange(4), {"fgsm_eps0.01": s}), "fgsm_eps0.01")


def _sign_noise_inputs(n, seed):
    from advdefense.data import make_synthetic

    images = make_synthetic(n, 10, seed, 0.05).train.images.astype(np.float32) / 255.0
    adv = noise_images(images, "sign", 0.03, seed)
    s = _attacked(adv, np.zeros(n, int), np.zeros(n, int), np.ones(n, int), np.ones(n, bool))
    return SplitInputs(images, np.arange(n), {"sign_eps0.03": s})


def test_pixel_cnn_learns_plainly_detectable_sign_noise(tmp_path):
    """The Gong et al. baseline used to stay at ln 2 (chance); now it must learn +-eps sign noise."""
    train, test = _sign_noise_inputs(600, 0), _sign_noise_inputs(200, 1)
    calibration = _sign_noise_inputs(200, 2).clean
    settings = {"width": 16, "epochs": 4, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0}
    rows, fitted = run_detection_method(
        DetectionJob("pixel_cnn", settings), DetectionInputs(train, test, calibration), tmp_path, device="cpu"
    )
    row = rows[
        (rows["train"] == "sign_eps0.03") & (rows["test"] == "sign_eps0.03") & (rows["set"] == "honest")
    ]
    assert row.iloc[0]["trained"] and row.iloc[0]["final_loss"] < LN2 - 0.2
    assert row.iloc[0]["auroc"] > 0.9, row


def test_a_detector_at_chance_is_reported_as_not_trained(tmp_path):
    """Identical inputs in both classes: nothing to learn; the loss stays at ln 2 and the row says so."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 48, 1, 1)).astype(np.float32)
    s = _attacked(x.copy(), np.zeros(400, int), np.zeros(400, int), np.ones(400, int), np.ones(400, bool))
    inputs = SplitInputs(x, np.arange(400), {"same_eps0.01": s})
    settings = {
        "widths": [8, 8, 8, 8],
        "dropout": 0.0,
        "epochs": 3,
        "batch_size": 100,
        "lr": 1e-4,
        "weight_decay": 0.0,
    }
    rows, _ = run_detection_method(
        DetectionJob("latent_mlp", settings), DetectionInputs(inputs, inputs, x[:200]), tmp_path, device="cpu"
    )
    assert not rows["trained"].any() and abs(rows["final_loss"].iloc[0] - LN2) < 0.02
    from advdefense.tables import NOT_TRAINED, table4

    table = table4(rows, ["same_eps0.01"], (0.01, 0.05))
    assert (table.loc["same_eps0.01"] == NOT_TRAINED).all()


def test_thresholds_come_from_calibration_only(tmp_path):
    """Changing the test images leaves every threshold unchanged; the FPR asked for is what the calibration
    split realises; an FPR below 1/N is refused."""
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(400, 1)).astype(np.float32)

    def inputs(shift):
        clean = rng.normal(shift, 1, size=(300, 1)).astype(np.float32)
        s = _attacked(
            clean + 2, np.zeros(300, int), np.zeros(300, int), np.ones(300, int), np.ones(300, bool)
        )
        return SplitInputs(clean, np.arange(300), {"k_eps0.1": s})

    @register
    class Identity(Detector):
        name, title = "identity_test_only", "identity"

        def score(self, x, batch_size=500):
            return np.asarray(x, np.float64)[:, 0]

    try:
        train = inputs(0.0)
        job = DetectionJob("identity_test_only", {}, fprs=(0.01, 0.05))
        run_detection_method(job, DetectionInputs(train, inputs(0.0), calibration), tmp_path / "a")
        run_detection_method(job, DetectionInputs(train, inputs(3.0), calibration), tmp_path / "b")
    finally:
        unregister("identity_test_only")
    a, b = read_scores(tmp_path / "a", "overall"), read_scores(tmp_path / "b", "overall")
    assert a.thresholds == b.thresholds and set(a.thresholds) == {0.01, 0.05}
    assert not np.array_equal(a.of("clean"), b.of("clean"))  # the test images did change
    thresholds = calibrate(calibration[:, 0], (0.01, 0.05))
    assert (calibration[:, 0] > thresholds[0.05]).mean() == pytest.approx(0.05)
    assert (calibration[:, 0] > thresholds[0.01]).mean() == pytest.approx(0.01)
    with pytest.raises(ConfigError, match=r"detection.fprs: 0.001 is below 1/400"):
        calibrate(calibration[:, 0], (0.001,))


def test_calibration_split_is_held_out_of_training(smoke):
    from advdefense.data import read_dataset_h5

    ds = read_dataset_h5(smoke["dir"] / f"results/data/{D}.h5")
    assert len(ds.calibration) == 200 and len(ds.train) == 3200
    assert not set(ds.calibration.source_index) & set(ds.train.source_index)
    with pytest.raises(
        ConfigError, match="dataset.calibration_size: 3400 calibration images .* nothing to train"
    ):
        validate_config(
            {
                **load_yaml(REPO / "config/smoke.yaml"),
                "dataset": {**load_yaml(REPO / "config/smoke.yaml")["dataset"], "calibration_size": 3400},
            }
        )
    with pytest.raises(ConfigError, match=r"detection.fprs: 0.001 is below 1/200"):
        cfg = load_yaml(REPO / "config/smoke.yaml")
        cfg["detection"]["fprs"] = [0.001, 0.05]
        validate_config(cfg)


def test_offgrid_control_sees_float_not_8bit_adversarials(smoke):
    ev = pd.read_csv(smoke["detection"] / "offgrid/evaluation.csv")
    honest = ev[(ev["train"] == POOLED) & (ev["set"] == "honest")].set_index("test")
    assert honest.loc["pgd_eps0.03", "auroc"] > 0.99
    assert honest.loc["pgd_8bit_eps0.03", "auroc"] == pytest.approx(0.5, abs=0.01)


def test_8bit_attack_file_is_on_the_grid_within_eps(smoke):
    from advdefense.attack_files import read_attack_file

    a = read_attack_file(smoke["dir"] / f"results/attacks/{D}/pgd_8bit/eps0.03/test.h5")
    q = a.adv.astype(np.float64) * 255
    assert np.abs(q - np.rint(q)).max() < 1e-3 and a.linf.max() <= 0.03 + 1e-6
    assert a.attrs["quantize"] == "8bit"
    assert np.array_equal(a.success, a.pred_adv != a.label)  # judged on the rounded images
    assert a.success.mean() > 0.3


def test_detector_aware_attack_beats_the_detector_oblivious_ones(smoke):
    """On the smoke run the attacker who knows the detector leaves the defended system less accurate than the
    stored attacks do; no gradient masking: an unbounded eps breaks (nearly) everything, the objective falls."""
    aware = pd.read_csv(smoke["detection"] / "latent_mlp/aware.csv")
    row = aware[~aware["sanity"]].iloc[0]
    assert row["defended_accuracy_aware"] < row["defended_accuracy_oblivious"], row
    assert row["defended_accuracy_strongest"] <= row["defended_accuracy_aware"]
    assert row["loss_last_step"] < row["loss_first_step"]
    sanity = aware[aware["sanity"]].iloc[0]
    assert sanity["attack_success_aware"] >= 0.9, sanity
    table = pd.read_csv(smoke["tables"] / "detection_defended.csv", index_col=0)
    assert any(label.startswith("Glow latent") for label in table.index)


def test_tables_have_configured_rows_and_columns(smoke):
    t4 = pd.read_csv(smoke["tables"] / "table4_detection.csv", index_col=0)
    assert list(t4.index) == KEYS + [POOLED] + [f"{k} (all images)" for k in KEYS + [POOLED]]
    assert list(t4.columns)[:4] == [
        "AUROC",
        "TPR at 1% FPR (%)",
        "TPR at 5% FPR (%)",
        "test FPR at the 1% threshold (%)",
    ]
    assert t4.loc["deepfool_eps0.03 (all images)", "unchanged by the attack"] > 0
    assert t4.loc[POOLED, "attacked test images"] < t4.loc[f"{POOLED} (all images)", "attacked test images"]
    t5 = pd.read_csv(smoke["tables"] / "table5_comparison.csv", index_col=0)
    assert (
        len(t5) == len(DETECTORS) + 1
        and t5.index[0].startswith("Glow latent")
        and "Kernel MMD" in t5.index[-1]
    )
    assert "flags noise_sign_eps0.03 (%)" in t5.columns
    gen = pd.read_csv(smoke["tables"] / "detection_generalisation.csv", index_col=0)
    assert sorted(gen.index) == sorted(KEYS + [POOLED]) and sorted(gen.columns) == sorted(KEYS + [POOLED])


def test_detectors_beat_chance_on_honest_sets(smoke):
    """Smoke (synthetic images, a 3-epoch Glow): the latent detector is weak but above chance on the pooled
    honest set (about 930 attacked vs 500 clean: SE of AUROC ~0.016); the likelihood and MagNet-JSD
    detectors are clearly better; nothing reaches the off-grid control's perfect score on float attacks."""
    table = pd.read_csv(smoke["tables"] / "table5_comparison.csv", index_col=0)
    rows = {label.split(" (")[0]: row for label, row in table.iterrows()}
    assert float(table.iloc[0][f"{POOLED} AUROC"]) > 0.53, table
    assert float(rows["Glow bits/dim threshold"][f"{POOLED} AUROC"]) > 0.75
    assert float(rows["Autoencoder + classifier JSD"][f"{POOLED} AUROC"]) > 0.75
    assert float(rows["Control: share of off-grid pixels"]["pgd_eps0.03 AUROC"]) > 0.99


def test_shuffled_labels_give_chance_auroc(smoke, tmp_path):
    """Training on labels shuffled at random must not find signal on the test split: no leak."""
    rng = np.random.default_rng(0)
    train = smoke["sets"]["train"]
    s = train.attacks["pgd_eps0.03"]
    attacked = s.attacked[s.honest]
    both = np.concatenate([train.clean, attacked])
    perm = rng.permutation(len(both))
    n = len(attacked)
    fake = _attacked(both[perm[:n]], np.zeros(n, int), np.zeros(n, int), np.ones(n, int), np.ones(n, bool))
    shuffled = SplitInputs(both[perm[n:]], np.arange(len(both) - n), {"pgd_eps0.03": fake})
    test = SplitInputs(
        smoke["sets"]["test"].clean,
        smoke["sets"]["test"].index,
        {"pgd_eps0.03": smoke["sets"]["test"].attacks["pgd_eps0.03"]},
    )
    cfg = smoke["cfg"]
    table, _ = run_detection_method(
        detection_job(cfg, "latent_mlp", cfg["seed"]),
        DetectionInputs(shuffled, test, smoke["sets"]["test"].clean[:200]),
        tmp_path,
        device="cpu",
    )
    row = table[
        (table["train"] == "pgd_eps0.03") & (table["test"] == "pgd_eps0.03") & (table["set"] == "honest")
    ]
    assert abs(row.iloc[0]["auroc"] - 0.5) < 0.1


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
    with pytest.raises(
        PipelineFileError, match=r"odd\.h5: latents of shape \(24, 8, 8\) cannot be mixed with"
    ):
        load_latent_inputs(root / "clean/test.h5", {"pgd_eps0.03": odd})
    with pytest.raises(PipelineFileError, match=r"latent file .*cw/eps0\.5/test\.h5 does not exist"):
        load_latent_inputs(root / "clean/test.h5", {"cw_eps0.5": root / "cw/eps0.5/test.h5"})
    x, y = training_arrays(smoke["sets"]["train"], POOLED)
    honest = sum(int(s.honest.sum()) for s in smoke["sets"]["train"].attacks.values())
    assert len(x) == 500 + honest and y.sum() == honest


def test_mmd_test_level_and_power():
    rng = np.random.default_rng(0)
    import torch

    g = torch.Generator().manual_seed(0)
    same = [mmd_test(rng.normal(size=(20, 10)), rng.normal(size=(20, 10)), 100, g) for _ in range(60)]
    assert 0.0 <= np.mean(np.array(same) < 0.05) <= 0.15  # level ~ alpha under the null
    shifted = [
        mmd_test(rng.normal(size=(20, 10)), rng.normal(1.0, 1, size=(20, 10)), 100, g) for _ in range(20)
    ]
    assert np.mean(np.array(shifted) < 0.05) >= 0.9
    table = mmd_power(
        rng.normal(size=(100, 5)),
        rng.normal(size=(100, 5)),
        {"shift": rng.normal(2, 1, (100, 5))},
        [5, 10],
        trials=10,
        permutations=50,
        alpha=0.05,
        seed=0,
    )
    power = table.set_index(["test", "batch_size"])["rejection_rate"]
    assert power[("shift", 10)] >= 0.9 and power[("clean", 10)] <= 0.3


def test_detector_training_does_not_depend_on_process_state(smoke, tmp_path):
    """Each detector's initial weights come from the configured seed, not from whatever ran before."""
    train, test = smoke["sets"]["train"], smoke["sets"]["test"]
    one = lambda s: SplitInputs(s.clean, s.index, {"pgd_eps0.03": s.attacks["pgd_eps0.03"]})  # noqa: E731
    settings = {**smoke["cfg"]["detection"]["latent_mlp"], "epochs": 2}
    import torch

    torch.manual_seed(1)
    job, inputs = (
        DetectionJob("latent_mlp", settings),
        DetectionInputs(one(train), one(test), test.clean[:200]),
    )
    first, _ = run_detection_method(job, inputs, tmp_path / "a", device="cpu")
    torch.rand(1000)  # disturb the global generator
    torch.manual_seed(12345)
    second, _ = run_detection_method(job, inputs, tmp_path / "b", device="cpu")
    pd.testing.assert_frame_equal(first, second)


def test_clean_and_attacked_images_go_through_the_flow_the_same_way(smoke, tmp_path):
    """An 'attack' file holding the unmodified clean images gets exactly the clean latents and bits/dim:
    no preprocessing (dequantisation, rounding) differs between the two paths."""
    import h5py

    from advdefense.data import read_dataset_h5
    from advdefense.flow import attack_latents
    from advdefense.latent_files import read_latents

    source = smoke["dir"] / f"results/attacks/{D}/pgd/eps0.03/test.h5"
    identity = tmp_path / "identity.h5"
    with h5py.File(source, "r") as f, h5py.File(identity, "w") as g:
        for k in f:
            g[k] = f[k][()]
        g.attrs.update(dict(f.attrs))
        ds = read_dataset_h5(smoke["dir"] / f"results/data/{D}.h5")
        g["adv"][...] = ds.test.images[f["index"][()]].astype(np.float32) / 255.0
        g["linf"][...] = 0.0
    attack_latents(
        identity, smoke["dir"] / f"results/flow/{D}/model.pt", tmp_path / "z.h5", device="cpu", batch_size=200
    )
    clean = read_latents(smoke["dir"] / f"results/latents/{D}/clean/test.h5")
    same = read_latents(tmp_path / "z.h5")
    assert np.array_equal(same.z, clean.z) and np.array_equal(same.bpd, clean.bpd)


def test_mahalanobis_is_the_smallest_distance_to_the_predicted_class_means(smoke, tmp_path):
    """Issue 44, item 4 (Lee et al. 2018, single layer): fitted on the classifier's penultimate features of the
    clean training images grouped by predicted class (never the labels), one shared covariance; a score is the
    smallest Mahalanobis distance to a class mean, differentiable in the pixels. On the smoke run it separates the
    attacks (AUROC well above chance), not same-size random noise, and the detector-aware attack beats it."""
    from advdefense.classifier import load_classifier
    from advdefense.data import read_split
    from advdefense.detectors import DetectorContext, detector_class
    from advdefense.inference import evaluation_model

    classifier = evaluation_model(load_classifier(smoke["dir"] / f"results/classifier/{D}/model.pt"))
    context = DetectorContext(0, torch.device("cpu"), tmp_path, {"classifier": classifier})
    detector = detector_class("mahalanobis")({}, context, POOLED)
    train = read_split(smoke["dir"] / f"results/data/{D}.h5", "train").images[:600]
    detector.fit(train.astype(np.float32) / 255, np.zeros(len(train)), clean_pool=train)
    x = torch.from_numpy(train.astype(np.float32) / 255)
    with torch.no_grad():
        f, c = context.features(x, "mahalanobis").double(), classifier(x).argmax(1)
    classes = sorted(set(c.tolist()))
    means = torch.stack([f[c == k].mean(0) for k in classes])
    assert torch.allclose(detector.means.double(), means, atol=1e-4)
    centred = f - means[[classes.index(k) for k in c.tolist()]]
    precision = torch.linalg.pinv(centred.T @ centred / len(f), hermitian=True)
    d = f[:5, None, :] - means[None]
    expected = torch.einsum("ncd,de,nce->nc", d, precision, d).amin(1)
    assert np.allclose(detector.score(x[:5].numpy()), expected.numpy(), rtol=1e-3)
    probe = x[:3].clone().requires_grad_(True)
    detector.torch_scorer()(probe).sum().backward()
    assert probe.grad.abs().sum() > 0
    evaluation = pd.read_csv(smoke["detection"] / "mahalanobis/evaluation.csv")
    pooled = evaluation[(evaluation["test"] == POOLED)]
    assert pooled["auroc"].min() > 0.7
    noise = evaluation[evaluation["test"].str.startswith("noise_")]
    assert noise["auroc"].max() < 0.6
    aware = pd.read_csv(smoke["detection"] / "mahalanobis/aware.csv")
    row = aware[~aware["sanity"]].iloc[0]
    assert row["defended_accuracy_strongest"] < row["defended_accuracy_oblivious"]
    assert aware[aware["sanity"]].iloc[0]["attack_success_aware"] >= 0.9


def test_lid_estimates_the_dimension_of_the_data_around_a_point():
    """The maximum-likelihood estimate behind LID (Levina & Bickel 2004) on points spread uniformly in a
    d-dimensional cube inside a 64-dimensional space: about d, whatever the embedding; a point that is also in the
    reference is not its own neighbour."""
    from advdefense.detectors import lid_estimates

    generator = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(64, 64, generator=generator))[0]
    for d in (2, 5, 10):
        cloud = torch.rand(4000, d, generator=generator, dtype=torch.float64)
        embedded = torch.cat([cloud, torch.zeros(4000, 64 - d, dtype=torch.float64)], 1) @ rotation.double()
        estimates = lid_estimates(embedded[:200], embedded[200:], k=20)
        assert abs(float(estimates.median()) - d) < 0.25 * d, (d, float(estimates.median()))
        with_self = lid_estimates(embedded[:200], embedded, k=20)
        assert torch.isfinite(with_self).all() and abs(float(with_self.median()) - d) < 0.25 * d
        # cdist's matrix-product path leaves a point ~1e-8 (float64) or ~1e-4 (float32) from its own copy
        single = lid_estimates(embedded[:200].float(), embedded.float(), k=20)
        assert (
            single.dtype == torch.float32 and abs(float(single.median()) - float(with_self.median())) < 0.01
        )


def test_lid_learns_the_attacks_and_the_aware_attack_beats_it(smoke):
    """On the smoke run LID (supervised, one logistic regression per attack key) separates the attacks from clean
    images, its fit is better than chance, and the detector-aware attack leaves less defended than the stored
    attacks; an unbounded eps breaks it."""
    evaluation = pd.read_csv(smoke["detection"] / "lid/evaluation.csv")
    own = evaluation[(evaluation["train"] == evaluation["test"]) & (evaluation["set"] == "honest")]
    assert len(own) and own["auroc"].min() > 0.6, own
    assert (evaluation["trained"].astype(str) == "True").all()
    aware = pd.read_csv(smoke["detection"] / "lid/aware.csv")
    row = aware[~aware["sanity"]].iloc[0]
    assert row["defended_accuracy_strongest"] < row["defended_accuracy_oblivious"]
    assert aware[aware["sanity"]].iloc[0]["attack_success_aware"] >= 0.9


def test_corrupted_images_are_scored_by_the_pooled_detector_only(tmp_path):
    """Issue 45's budget: the corruptions' false alarms are the pooled detector's (what the corruption table
    shows); a supervised detector's per-key models no longer score the 75 corrupted copies of every test image
    (at full size that was 7 x 150 000 images through the classifier for LID). An unsupervised detector, fitted
    once, is scored once and reports them for every key."""
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(400, 1)).astype(np.float32)
    clean = rng.normal(size=(200, 1)).astype(np.float32)
    keys = ("a_eps0.1", "b_eps0.1")
    ones = np.ones(200, int)
    attacks = {k: _attacked(clean + 2, 0 * ones, 0 * ones, ones, ones.astype(bool)) for k in keys}
    split = SplitInputs(clean, np.arange(200), attacks)
    corruptions = {"fog_s1": clean + 0.5, "fog_s2": clean + 1.0}
    scored = []

    class Counting(Detector):
        def score(self, x, batch_size=500):
            scored.append((self.tag, len(x)))
            return np.asarray(x, np.float64)[:, 0]

    @register
    class Supervised(Counting):
        name, title, supervised = "supervised_test_only", "supervised", True

    @register
    class Unsupervised(Counting):
        name, title = "unsupervised_test_only", "unsupervised"

    try:
        inputs = DetectionInputs(split, split, calibration, corruptions=corruptions)
        table, _ = run_detection_method(DetectionJob("supervised_test_only", {}), inputs, tmp_path / "s")
        scored, by_supervised = [], list(scored)
        once, _ = run_detection_method(DetectionJob("unsupervised_test_only", {}), inputs, tmp_path / "u")
    finally:
        unregister("supervised_test_only")
        unregister("unsupervised_test_only")
    rows = table[table["set"] == "corruption"]
    assert set(rows["train"]) == {POOLED} and sorted(rows["test"]) == ["fog_s1", "fog_s2"]
    # each model scores calibration, clean, both keys; the pooled one the two corrupted sets on top
    assert sorted(n for tag, n in by_supervised if tag == POOLED) == [200, 200, 200, 200, 200, 400]
    assert all(len([1 for t, _ in by_supervised if t == k]) == 4 for k in keys)
    assert set(read_scores(tmp_path / "s", POOLED).scores) >= {"fog_s1", "fog_s2"}
    assert "fog_s1" not in read_scores(tmp_path / "s", keys[0]).scores
    # the unsupervised detector: one evaluation, its corruption rows under every training key
    rows = once[once["set"] == "corruption"]
    assert set(rows["train"]) == {*keys, POOLED} and rows.groupby("test")["tpr_at_fpr5"].nunique().max() == 1
