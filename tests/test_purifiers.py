"""Purifiers as plug-ins (issue 24): the registry, what each reference purifier computes, the gradient each one
declares (checked against finite differences), bad purifiers refused naming themselves, EOT for a random one,
and a purifier added in this module showing up in Table 3, the accuracy figure, the estimate and the schema
without another edit."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.models import save_checkpoint
from advdefense.models.autoencoder import ConvAutoencoder
from advdefense.plan.purifier_specs import BUILT_IN, PURIFIERS, PurifierSpec
from advdefense.purification import PurifierSetup, purify_attack_file, purify_clean
from advdefense.purifiers import (
    REGISTRY,
    ExpectationOverTransforms,
    Purifier,
    adaptive_model,
    build_purifier,
    check_gradient,
    checked_output,
    jpeg_round_trip,
    register,
    unregister,
)
from conftest import REPO

D = "synthetic-smoke"
DEFAULTS = validate_config({})["purification"]


def _settings(name: str) -> dict:
    return dict(DEFAULTS.get(name) or {})


@pytest.fixture(scope="module")
def autoencoder_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ae") / "ae.pt"
    torch.manual_seed(0)
    save_checkpoint(path, "autoencoder", ConvAutoencoder([8, 16]))
    return path


def _built(name, autoencoder_checkpoint):
    return build_purifier(name, _settings(name), {"autoencoder": autoencoder_checkpoint})


def test_the_registry_and_the_declarations_agree():
    # the built-ins, and any plug-in file's (a purifier dropped into src/advdefense/plugins/ keeps this green)
    assert set(REGISTRY) == set(PURIFIERS) >= BUILT_IN == {"autoencoder", "jpeg", "bit_depth", "median"}
    assert DEFAULTS["methods"] == list(PURIFIERS)  # methods: null is every registered purifier
    assert {n for n in PURIFIERS if PURIFIERS[n].gradient == "bpda"} == {"jpeg", "bit_depth"}
    with pytest.raises(
        ConfigError, match=r"purification\.methods: unknown purifier 'jpg' \(registered: autoencoder"
    ):
        validate_config({"purification": {"methods": ["jpg"]}})
    with pytest.raises(ConfigError, match=r"purification\.jpeg\.quality"):
        validate_config({"purification": {"jpeg": {"quality": 0}}})
    with pytest.raises(ValueError, match="gradient 'approximate' is not one of"):
        PurifierSpec("x", "X", gradient="approximate")


def test_bit_depth_and_median_compute_what_xu_et_al_describe(autoencoder_checkpoint):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = _built("bit_depth", autoencoder_checkpoint)(x)
    levels = 2 ** _settings("bit_depth")["bits"] - 1
    assert torch.allclose(out * levels, (out * levels).round(), atol=1e-5)  # on the 2^bits grid ...
    assert (out - x).abs().max() <= 0.5 / levels + 1e-6  # ... at the nearest level
    median = _built("median", autoencoder_checkpoint)
    flat = torch.full((1, 3, 32, 32), 0.25)
    spiked = flat.clone()
    spiked[0, :, 10, 10] = 1.0
    assert torch.equal(median(spiked), flat)  # one outlier pixel in each 2 x 2 window: the median drops it


def test_jpeg_is_pillows_round_trip_at_the_configured_quality(autoencoder_checkpoint):
    g = torch.Generator().manual_seed(2)
    # a smooth image (a gradient with a little noise): JPEG keeps it close; quality 95 closer than quality 10
    ramp = torch.linspace(0, 1, 32)
    x = (0.5 * ramp[None, None, :, None] + 0.4 * ramp[None, None, None, :]).expand(2, 3, 32, 32).clone()
    x = (x + 0.02 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    out = _built("jpeg", autoencoder_checkpoint)(x)
    assert torch.equal(out * 255, (out * 255).round())  # decoded 8-bit pixels
    pixels = (x[0] * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=_settings("jpeg")["quality"])
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert np.array_equal((out[0] * 255).round().byte().permute(1, 2, 0).numpy(), expected)
    err = {q: float((jpeg_round_trip(x, q) - x).abs().mean()) for q in (10, 95)}
    assert err[95] < err[10] < 0.1


def test_every_declared_gradient_holds(autoencoder_checkpoint):
    """A purifier declared 'exact' has autograd gradients that finite differences confirm (the autoencoder is
    smooth, the median piecewise linear); one declared 'bpda' passes the gradient through unchanged (the
    identity backward); and a purifier that rounds but declares 'exact' is caught by the same check."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for name in PURIFIERS:
        purifier = _built(name, autoencoder_checkpoint)
        if PURIFIERS[name].gradient == "exact":
            assert check_gradient(purifier, x) < 0.1, name
        else:
            w = torch.randn(x.shape)
            xr = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad((w * purifier(xr)).sum(), xr)
            assert torch.equal(grad, w), name  # BPDA: d out / d x = I
            assert check_gradient(purifier, x) > 0.5, name  # and its true gradient is not the identity

    class Rounding(torch.nn.Module):  # a non-differentiable step without a declared gradient rule
        def forward(self, x):
            return torch.round(x * 31) / 31

    assert check_gradient(Rounding(), x) > 0.9


def test_a_bad_purifier_output_is_refused_naming_the_purifier():
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"purifier 'toy': output shape \(2, 3, 16, 16\) for input shape"):
        checked_output("toy", x, x[:, :, :16, :16])
    with pytest.raises(ValueError, match=r"purifier 'toy': output leaves \[0, 1\] \(min .*, max 2"):
        checked_output("toy", x, 2 * x + 0.01)
    with pytest.raises(ConfigError, match=r"purifier 'autoencoder' needs the model\(s\) \['autoencoder'\]"):
        build_purifier("autoencoder", {}, {})


class ToyBlur(Purifier):
    """A newcomer: a 3 x 3 box blur (differentiable), with a settings block it declares."""

    name, title, reference = "toy_blur", "Toy box blur", "a test's plug-in"
    cost = 0.05
    settings_schema = {"passes": {"type": "integer", "minimum": 1, "default": 1}}

    def forward(self, x):
        for _ in range(self.settings["passes"]):
            x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return x


class ToyNoise(Purifier):
    """A random purifier: uniform noise of +-0.05, clipped (the adaptive attack must use EOT)."""

    name, title, random = "toy_noise", "Toy noise", True

    def forward(self, x):
        return (x + (torch.rand_like(x) - 0.5) * 0.1).clamp(0, 1)


def test_a_random_purifier_is_attacked_through_eot():
    register(ToyNoise)
    try:
        classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        purifier = build_purifier("toy_noise", {}, {})
        model = adaptive_model(purifier, classifier, eot_samples=8)
        assert isinstance(model, ExpectationOverTransforms) and model.samples == 8
        assert "EOT" in PURIFIERS["toy_noise"].adaptive_label
        x = torch.rand(4, 3, 32, 32)
        torch.manual_seed(0)
        averaged = model(x)
        torch.manual_seed(0)
        draws = torch.stack([classifier(purifier(x)) for _ in range(8)]).mean(0)
        assert torch.allclose(averaged, draws)
        # a deterministic purifier is attacked through it as it is
        register(ToyBlur)
        blur = build_purifier("toy_blur", {"passes": 1}, {})
        assert not isinstance(adaptive_model(blur, classifier, 8), ExpectationOverTransforms)
    finally:
        unregister("toy_noise")
        unregister("toy_blur")
    assert "toy_noise" not in PURIFIERS and "toy_blur" not in REGISTRY


def test_a_purifier_added_in_a_test_module_appears_everywhere(smoke_run, tmp_path):
    """Registering ToyBlur is the only edit: the schema takes its block, `methods: null` includes it, the DAG's
    decisions and the estimate price it, its files go through the same purify functions, and Table 3, the
    accuracy figure and the gathering over seeds carry its title."""
    from advdefense import estimate, figures, seeds, tables
    from advdefense.plan import decisions

    register(ToyBlur)
    try:
        cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
        assert cfg["purification"]["methods"][-1] == "toy_blur"
        assert cfg["purification"]["toy_blur"] == {"passes": 1}  # the declared block, default filled in
        assert "toy_blur" in decisions.purifiers(cfg)
        with pytest.raises(ConfigError, match=r"purification\.toy_blur\.passes"):
            validate_config({"purification": {"toy_blur": {"passes": 0}}})
        with_toy = estimate.estimate_seconds(cfg)
        smoke = load_yaml(REPO / "config/smoke.yaml")
        smoke["purification"]["methods"] = sorted(BUILT_IN)
        without = estimate.estimate_seconds(validate_config(smoke))
        assert (
            with_toy["purification"] > without["purification"]
            and with_toy["adaptive attacks"] > without["adaptive attacks"]
        )

        results = smoke_run / "results"
        classifier = results / f"classifier/{D}/model.pt"
        setup = PurifierSetup("toy_blur", {"passes": 1}, {})
        attack = results / f"attacks/{D}/pgd/eps0.03/test.h5"
        toy_file = tmp_path / "toy_pgd.h5"
        purify_attack_file(attack, setup, classifier, toy_file, device="cpu", batch_size=250)
        clean_file = tmp_path / "toy_clean.h5"
        images, seed = cfg["attack_defaults"]["images"]["test"], cfg["seed"]
        purify_clean(
            results / f"data/{D}.h5",
            setup,
            classifier,
            "test",
            clean_file,
            images=images,
            seed=seed,
            device="cpu",
        )
        with h5py.File(toy_file, "r") as f:
            assert f.attrs["purifier"] == "toy_blur" and f["purified"].shape == (500, 3, 32, 32)
        purifiers = ["autoencoder", "toy_blur"]
        columns = [("pgd", 0.03)]
        purified = {
            ("autoencoder", "pgd", 0.03): results / f"purified/{D}/autoencoder/pgd/eps0.03/test.h5",
            ("toy_blur", "pgd", 0.03): toy_file,
        }
        clean = {"autoencoder": results / f"purified/{D}/autoencoder/clean/test.h5", "toy_blur": clean_file}
        csv, md = tmp_path / "t3.csv", tmp_path / "t3.md"
        tables.write_table3(purifiers, columns, purified, {}, clean, csv, md)
        table = pd.read_csv(csv, index_col=0)
        assert "Toy box blur: all attacked images after purification" in table.index
        assert "Toy box blur: a test's plug-in" in md.read_text()
        assert 0 <= table.loc["Toy box blur: clean images", "overall"] <= 100
        points = figures.accuracy_vs_epsilon(
            results / f"attacks/{D}/summary.csv", tmp_path / "acc.png", figures.defended_accuracy([toy_file])
        )
        assert "Toy box blur" in set(points["defence"])
        gathered = seeds.gather_over_seeds([csv, csv], [0, 1])
        assert "Toy box blur: clean images" in set(gathered["row"])
    finally:
        unregister("toy_blur")
    assert "toy_blur" not in validate_config({})["purification"]["methods"]


def test_table3_flags_a_gradient_free_attack_that_beats_the_gradient_ones(smoke_run, tmp_path):
    """The masking check: in Table 3, a gradient-free attack (Square) that leaves a purifier a lower accuracy
    than every gradient attack at its eps is flagged (1), one that does not is not (0); the other columns stay
    empty. Here FGSM and PGD of the smoke run stand in for the two kinds, each in turn."""
    from advdefense.attack_files import read_attack_file
    from advdefense.plan.attack_specs import gradient_free
    from advdefense.tables import column_name, table3

    assert gradient_free({"class": "AutoAttack", "params": {"version": "custom", "attacks": ["square"]}})
    assert not gradient_free({"class": "AutoAttack", "params": {"version": "standard"}})
    assert not gradient_free(
        {"class": "AutoAttack", "params": {"version": "custom", "attacks": ["square", "apgd-ce"]}}
    )
    results = smoke_run / "results"
    columns = [("fgsm", 0.03), ("pgd", 0.03)]
    files = {
        kind: {
            ("autoencoder", a, e): results / f"{kind}/{D}/autoencoder/{a}/eps0.03/test.h5" for a, e in columns
        }
        for kind in ("purified", "adaptive")
    }
    clean = {"autoencoder": results / f"purified/{D}/autoencoder/clean/test.h5"}
    accuracy = {}
    for (_, attack, _), path in files["adaptive"].items():
        a = read_attack_file(path, require=("label", "pred_adv"))
        accuracy[attack] = (a.pred_adv == a.label).mean()
    row = f"{PURIFIERS['autoencoder'].title}: gradient-free attack beats the gradient attacks"
    for free, other in (("fgsm", "pgd"), ("pgd", "fgsm")):
        table = table3(["autoencoder"], columns, files["purified"], files["adaptive"], clean, {free})
        assert table.loc[row, column_name(free, 0.03)] == float(accuracy[free] < accuracy[other])
        assert pd.isna(table.loc[row, column_name(other, 0.03)])
        assert table.loc[row, "overall"] == float(accuracy[free] < accuracy[other])
    assert accuracy["pgd"] < accuracy["fgsm"]  # so PGD posing as Square is flagged, FGSM is not
