import json
from dataclasses import replace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from advdefense.attack_files import AttackFileError
from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.data import read_dataset_h5
from advdefense.inference import predict
from advdefense.models import CheckpointError, save_checkpoint
from advdefense.models.autoencoder import ConvAutoencoder
from advdefense.plan.jobs import attack_job
from advdefense.plan.names import POOLED
from advdefense.plan.purifier_specs import PURIFIERS
from advdefense.purification import PurifierSetup, psnr, purify_attack_file
from advdefense.purified_files import read_purified
from advdefense.purifiers import load_autoencoder
from advdefense.tables import TABLE3_BARE_ROWS, table3, table3_rows
from conftest import REPO

D = "synthetic-smoke"


@pytest.fixture(scope="module")
def smoke(smoke_run):
    return {
        "dir": smoke_run,
        "cfg": validate_config(load_yaml(REPO / "config/smoke.yaml")),
        "ae": smoke_run / f"results/autoencoder/{D}/model.pt",
        "model": smoke_run / f"results/classifier/{D}/model.pt",
        "table": smoke_run / f"results/tables/{D}/table3_purification.csv",
        "setup": PurifierSetup(
            "autoencoder", {}, {"autoencoder": smoke_run / f"results/autoencoder/{D}/model.pt"}
        ),
    }


def test_autoencoder_shape_follows_figure_2():
    model = ConvAutoencoder([32, 64])
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [type(c).__name__ for c in convs] == ["Conv2d", "Conv2d", "ConvTranspose2d", "ConvTranspose2d"]
    x = torch.rand(2, 3, 32, 32)
    assert model.encoder(x).shape == (2, 64, 8, 8)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_the_paper_autoencoder_is_the_default_of_the_paper_configs():
    """Issue 41: the paper's autoencoder as it describes it (four convolutional layers, a code smaller than the
    image, clean images only) is the schema's default and the setting of config/config.yaml and
    config/cifar10-full.yaml; the denoising design stays a setting (the smoke run's)."""
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    defaults = {
        k: v["default"]
        for k, v in schema["properties"]["autoencoder"]["properties"].items()
        if "default" in v
    }
    for name in ("config.yaml", "cifar10-full.yaml"):
        settings = {**defaults, **(load_yaml(REPO / "config" / name).get("autoencoder") or {})}
        model = ConvAutoencoder(settings["widths"])
        convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        assert len(convs) == 4, name
        code = model.encoder(torch.rand(1, 3, 32, 32))
        assert code.numel() == model.code_values == 1024 < 3 * 32 * 32, name
        assert settings["noise_std"] == 0, name
    assert ConvAutoencoder(load_yaml(REPO / "config/smoke.yaml")["autoencoder"]["widths"]).code_values == 4096


def test_reconstruction_beats_the_mean_image_by_a_margin(smoke):
    """Floor: the autoencoder must reconstruct clearly better (>= 3 dB PSNR) than predicting the
    training-set mean image for every test image, the best input-independent reconstruction."""
    metrics = json.loads((smoke["dir"] / f"results/autoencoder/{D}/metrics.json").read_text())
    ds = read_dataset_h5(smoke["dir"] / f"results/data/{D}.h5")
    mean_image = ds.train.images.astype(np.float64).mean(0) / 255
    baseline = ((ds.test.images / 255 - mean_image) ** 2).mean()
    assert metrics["test_psnr"] >= psnr(baseline) + 3.0
    assert metrics["test_psnr"] == pytest.approx(psnr(metrics["test_mse"]))
    assert metrics["code_values"] == 4096 and metrics["code_fraction"] == pytest.approx(4096 / 3072)


def test_purification_helps_and_adaptive_attack_hurts(smoke):
    """Every purifier of the registry has its block of rows; the autoencoder recovers a good share of the
    successful adversarials, and the attack that knows it does worse than the one that ignores it on every
    column; for every purifier, pooled over the columns, the adaptive attacks do worse than the oblivious ones
    (per column a weak one-step attack through a BPDA purifier can tie: FGSM through the 5-bit rounding)."""
    table = pd.read_csv(smoke["table"], index_col=0)
    ae = PURIFIERS["autoencoder"].title
    for column in ["fgsm (eps=0.03)", "pgd (eps=0.03)", "deepfool (eps=0.03)", POOLED]:
        col = table[column]
        # successful adversarials fool the undefended classifier by definition
        assert col["Successful adversarials: no purifier"] == 0.0
        assert col[f"{ae}: successful adversarials after purification"] > 20.0
        assert col[f"{ae}: all attacked images after purification"] > col["All attacked images: no purifier"]
        assert col[f"{ae}: adaptive attack through it"] < col[f"{ae}: all attacked images after purification"]
    pooled = table[POOLED]
    for name in smoke["cfg"]["purification"]["methods"]:
        title = PURIFIERS[name].title
        assert (
            pooled[f"{title}: adaptive attack through it"]
            < pooled[f"{title}: all attacked images after purification"]
        ), name
    # clean accuracy is one number for every column, with and without each purifier
    assert table.loc["Clean images: no purifier"].nunique() == 1
    assert all(table.loc[f"{PURIFIERS[p].title}: clean images"].nunique() == 1 for p in PURIFIERS)


def test_table3_layout_matches_config(smoke):
    table = pd.read_csv(smoke["table"], index_col=0)
    methods = smoke["cfg"]["purification"]["methods"]
    assert methods == list(PURIFIERS)  # methods: null is every registered purifier
    assert list(table.index) == table3_rows(methods) and table.index[0] == TABLE3_BARE_ROWS[0]
    assert list(table.columns) == [
        "fgsm (eps=0.03)",
        "pgd (eps=0.03)",
        "deepfool (eps=0.03)",
        "overall",
    ]  # tables.table3.attacks of the smoke config
    assert table.loc["Successful adversarials: count", "overall"] == sum(
        table.loc["Successful adversarials: count", c] for c in table.columns[:3]
    )
    md = (smoke["table"].with_suffix(".md")).read_text()
    assert md.startswith("## Table 3") and "| Successful adversarials: count | " in md and "47.92" in md
    assert all(f"{PURIFIERS[p].title}: {PURIFIERS[p].reference}" in md for p in methods)


def test_the_worst_case_over_the_adaptive_attacks_is_per_image(smoke):
    """Issue 45: per purifier and eps, an image counts as defended only if every adaptive attack at that eps left it
    right: the row equals that recomputed from the adaptive files, is at most every adaptive column of its eps, and
    at least what the weakest attack alone would allow minus the others' wins (a union bound)."""
    from advdefense.attack_files import read_attack_file
    from advdefense.tables import WORST_ROW, worst_case

    table = pd.read_csv(smoke["table"], index_col=0)
    columns = ["fgsm (eps=0.03)", "pgd (eps=0.03)", "deepfool (eps=0.03)"]
    for name in smoke["cfg"]["purification"]["methods"]:
        title = PURIFIERS[name].title
        files = [
            smoke["dir"] / f"results/adaptive/{D}/{name}/{a}/eps0.03/test.h5"
            for a in ("fgsm", "pgd", "deepfool")
        ]
        right = None
        for f in files:
            a = read_attack_file(f, require=("index", "label", "pred_adv"))
            ok = pd.Series(a.pred_adv == a.label, index=a.index)
            right = ok if right is None else (right & ok).dropna()
        expected = 100 * right.mean()
        worst = table.loc[f"{title}: {WORST_ROW}"]
        assert worst[columns].nunique() == 1 and worst[columns[0]] == pytest.approx(expected)
        assert pd.isna(worst["overall"])
        adaptive = table.loc[f"{title}: adaptive attack through it", columns]
        assert worst[columns[0]] <= adaptive.min() + 1e-9
        assert worst[columns[0]] >= 100 - sum(100 - v for v in adaptive) - 1e-9
        assert worst_case(files) == (pytest.approx(expected), len(right))
    # one file: the worst case is that attack's own accuracy
    one = read_attack_file(files[1], require=("label", "pred_adv"))
    assert worst_case(files[1:2])[0] == pytest.approx(100 * (one.pred_adv == one.label).mean())


def test_purified_files_are_consistent(smoke):
    root = smoke["dir"] / f"results/purified/{D}/autoencoder"
    p = read_purified(root / "pgd/eps0.03/test.h5")
    with h5py.File(root / "pgd/eps0.03/test.h5", "r") as f:
        images = f["purified"][()]
    assert images.shape == (500, 3, 32, 32) and images.min() >= 0 and images.max() <= 1
    classifier = torch.load(smoke["model"], weights_only=True)
    from advdefense.classifier import load_classifier

    model = load_classifier(smoke["model"])
    pred = predict(model, torch.from_numpy(images), smoke["cfg"]["purification"]["batch_size"]).numpy()
    assert np.array_equal(pred, p.pred_purified) and classifier["kind"] == "classifier"


def test_wrong_autoencoder_checkpoint_is_refused(smoke, tmp_path):
    path = tmp_path / "ae.pt"
    save_checkpoint(path, "autoencoder", ConvAutoencoder([16, 16]))
    with pytest.raises(
        CheckpointError,
        match=r"ae\.pt: architecture does not match the configuration \(widths: file has \[16, 16\]",
    ):
        load_autoencoder(path, settings=smoke["cfg"]["autoencoder"])
    with pytest.raises(CheckpointError, match="holds a 'classifier' model, expected a 'autoencoder' model"):
        load_autoencoder(smoke["model"])


def test_bad_attack_files_are_refused(smoke, tmp_path):
    src = smoke["dir"] / f"results/attacks/{D}/fgsm/eps0.03/test.h5"
    broken = tmp_path / "broken.h5"
    with h5py.File(src, "r") as f, h5py.File(broken, "w") as g:
        for k in ("index", "label", "pred_clean", "pred_adv"):
            g[k] = f[k][()]
        g.attrs.update(dict(f.attrs))
    with pytest.raises(AttackFileError, match=r"broken\.h5: missing dataset\(s\) success"):
        purify_attack_file(broken, smoke["setup"], smoke["model"], tmp_path / "out.h5", device="cpu")
    outside = tmp_path / "outside.h5"
    with h5py.File(src, "r") as f, h5py.File(outside, "w") as g:
        for k in f:
            g[k] = f[k][()]
        g["adv"][0, 0, 0, 0] = 1.5
        g.attrs.update(dict(f.attrs))
    with pytest.raises(
        AttackFileError, match=r"outside\.h5: adversarial image 0 \(of 'adv'\) holds values outside \[0, 1\]"
    ):
        purify_attack_file(outside, smoke["setup"], smoke["model"], tmp_path / "out.h5", device="cpu")
    assert not (tmp_path / "out.h5").exists()


def test_table_for_an_attack_that_was_not_generated(smoke):
    with pytest.raises(ConfigError, match=r"tables\.table3\.attacks: 'cw' is not generated"):
        validate_config({**load_yaml(REPO / "config/smoke.yaml"), "tables": {"table3": {"attacks": ["cw"]}}})
    with pytest.raises(ConfigError, match=r"no file of cw at eps 0.1 through purifier 'jpeg'"):
        table3(
            ["jpeg"],
            [("cw", 0.1)],
            {},
            {},
            {"jpeg": smoke["dir"] / f"results/purified/{D}/jpeg/clean/test.h5"},
        )


def test_adaptive_attack_keeps_the_worst_of_its_restarts(smoke, tmp_path):
    """purification.adaptive.restarts: 2 (smoke) runs through `attack_methods.Restarts`: the stored file says 2 runs and
    which run's adversarial it keeps; where it keeps the first run's, that adversarial is the single run's bit for
    bit, and a later run only ever replaced an image that the first run left classified correctly. The setting
    replaces the attack's own restarts (it does not multiply them)."""
    from advdefense.attack_files import read_attack_file
    from advdefense.purification import AdaptiveSettings, adaptive_attack

    cfg = smoke["cfg"]
    stored = read_attack_file(
        smoke["dir"] / f"results/adaptive/{D}/autoencoder/pgd/eps0.03/test.h5",
        require=("adv", "restart", "success"),
    )
    assert stored.attrs["restarts"] == 2 and set(np.unique(stored.restart)) <= {0, 1}
    job = attack_job(cfg, "pgd", 0.03, "test", cfg["seed"])
    job = replace(
        job, spec={**job.spec, "restarts": 7}
    )  # the attack's own restarts: replaced by the adaptive setting

    def adaptive(restarts):
        return AdaptiveSettings(
            images=cfg["purification"]["adaptive"]["images"],
            restarts=restarts,
            params=cfg["purification"]["adaptive"]["params"]["pgd"],
        )

    args = (smoke["dir"] / f"results/data/{D}.h5", smoke["model"], smoke["setup"], job)
    adaptive_attack(*args, tmp_path / "once.h5", adaptive=adaptive(1), device="cpu")
    once = read_attack_file(tmp_path / "once.h5", require=("adv", "success"))
    assert once.attrs["restarts"] == 1
    with h5py.File(tmp_path / "once.h5", "r") as f:
        assert "restart" not in f  # one run: nothing to record
    first = stored.restart == 0
    np.testing.assert_array_equal(stored.adv[first], once.adv[first])
    later = ~first
    assert not once.success[later].any() and stored.success[later].all()
    assert (stored.success >= once.success).all()
    adaptive_attack(*args, tmp_path / "twice.h5", adaptive=adaptive(2), device="cpu")
    twice = read_attack_file(tmp_path / "twice.h5", require=("adv", "restart"))
    assert twice.attrs["restarts"] == 2 and twice.restart.max() <= 1
    np.testing.assert_array_equal(twice.adv, stored.adv)
