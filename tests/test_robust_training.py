"""Robust classifiers (issue 24, item 4): the training methods' attacks stay in their ball, their losses are what
the papers define, the positive control comes out robust where standard training does not, and a list of
methods makes one run per method, gathered side by side."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from advdefense.classifier import load_classifier, train_classifier
from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.data import make_synthetic, read_split, write_dataset_h5
from advdefense.models import CifarResNet
from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.names import run_groups, run_plan
from advdefense.plan.purifier_specs import PURIFIERS
from advdefense.plan.training_specs import BUILT_IN, TRAININGS, run_training_settings
from advdefense.robust_training import (
    REGISTRY,
    Standard,
    TrainingMethod,
    pgd,
    pgd_accuracy,
    register,
    training_method,
    unregister,
)
from advdefense.seeds import gather_side_by_side
from conftest import REPO, job_counts, run_snakemake

EPS = 8 / 255


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _model(seed=0):
    torch.manual_seed(seed)
    return CifarResNet(8, 10, 8).train()


def _settings(name):
    return validate_config({"classifier": {"training": name}})["classifier"][name]


@pytest.mark.parametrize("name", ["pgd_at", "fast_at"])
def test_adversarial_training_attacks_stay_in_the_ball_and_raise_the_loss(name):
    """The images a PGD / fast AT step trains on lie within eps of the batch and in [0, 1], and their
    cross-entropy is above the clean one (the attack climbs the loss)."""
    x, y = _batch()
    model = _model()
    method = training_method(name, model, _settings(name))
    seen = {}
    real_forward = method.forward

    def forward(inputs):
        seen["last"] = inputs.detach().clone()
        return real_forward(inputs)

    method.forward = forward
    loss, logits = method.loss(x, y, torch.Generator().manual_seed(0))
    x_adv = seen["last"]
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > EPS / 2  # it moved
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y)
    assert float(loss.detach()) > float(clean)
    assert torch.equal(logits.argmax(1), model(x_adv).argmax(1))  # accuracy counted on what it trains on


def test_trades_loss_is_clean_cross_entropy_plus_beta_kl():
    """TRADES: CE(f(x), y) + beta KL(f(x_adv) || f(x)), beta x a non-negative term, logits of the clean images;
    the model is back in train mode afterwards."""
    x, y = _batch()
    model = _model()
    settings = _settings("trades")
    loss, logits = training_method("trades", model, settings).loss(x, y, torch.Generator().manual_seed(0))
    assert model.training
    with torch.no_grad():
        clean_logits = model(x)
        ce = F.cross_entropy(clean_logits, y)
    assert torch.allclose(logits, clean_logits, atol=1e-5)
    assert float(loss.detach()) > float(ce)  # the KL of a point that maximises it is > 0
    zero_beta = training_method("trades", model, {**settings, "beta": 0.0})
    loss0, _ = zero_beta.loss(x, y, torch.Generator().manual_seed(0))
    assert float(loss0) == pytest.approx(float(ce), rel=1e-5)


def test_pgd_is_deterministic_given_the_generator_and_finds_worse_points_than_noise():
    x, y = _batch(32)
    model = _model().eval()
    method = Standard(model, {})
    a = pgd(method, x, y, EPS, 5, EPS / 4, torch.Generator().manual_seed(1))
    b = pgd(method, x, y, EPS, 5, EPS / 4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    noise = (x + (torch.rand(x.shape) * 2 - 1) * EPS).clamp(0, 1)
    with torch.no_grad():
        assert F.cross_entropy(model(a), y) > F.cross_entropy(model(noise), y)


def test_bad_training_settings_name_their_key():
    with pytest.raises(ConfigError, match="classifier.training: unknown training method 'pgdat'"):
        validate_config({"classifier": {"training": "pgdat"}})
    with pytest.raises(
        ConfigError, match="classifier.pgd_at.epsilon: 0 is less than or equal to the minimum"
    ):
        validate_config({"classifier": {"training": "pgd_at", "pgd_at": {"epsilon": 0}}})
    with pytest.raises(ConfigError, match="classifier.trades.epsilon: -0.1 is less than or equal"):
        validate_config({"classifier": {"trades": {"epsilon": -0.1}}})
    with pytest.raises(ConfigError, match="classifier.pgd_at.steps: 0 is less than the minimum of 1"):
        validate_config({"classifier": {"pgd_at": {"steps": 0}}})
    with pytest.raises(
        ConfigError, match="classifier.training: 2 methods .* but classifier.source is 'robustbench'"
    ):
        validate_config(
            {"classifier": {"training": ["standard", "pgd_at"], "source": "robustbench", "robustbench": {}}}
        )


def test_runs_are_one_per_method_and_seed_and_settings_only_their_own():
    cfg = load_yaml(REPO / "config/smoke.yaml")
    assert run_plan(validate_config(cfg)) == {"synthetic-smoke": ("synthetic-smoke", 0, "standard")}
    cfg["classifier"]["training"] = ["standard", "pgd_at"]
    cfg["seeds"] = [0, 1]
    cfg = validate_config(cfg)
    assert run_groups(cfg) == {"synthetic-smoke-standard": "standard", "synthetic-smoke-pgd_at": "pgd_at"}
    assert list(run_plan(cfg)) == [
        "synthetic-smoke-standard-seed0",
        "synthetic-smoke-standard-seed1",
        "synthetic-smoke-pgd_at-seed0",
        "synthetic-smoke-pgd_at-seed1",
    ]
    standard = run_training_settings(cfg["classifier"], "standard")
    pgd_at = run_training_settings(cfg["classifier"], "pgd_at")
    # a standard run's settings are those from before training methods existed (its results are not re-made)
    assert not {"training", "pgd_at", "trades", "fast_at"} & set(standard)
    assert pgd_at["training"] == "pgd_at" and pgd_at["pgd_at"]["steps"] == 7
    assert not {"trades", "fast_at"} & set(pgd_at)


def test_a_training_method_added_in_a_test_module_trains_and_is_declared():
    """A plug-in training method: one class, registered; its declaration joins the registry (config checks,
    estimate) and the one training loop trains with it."""

    @register
    class LabelSmoothing(TrainingMethod):
        name, title, reference, has_settings = "toy_smooth", "Label smoothing", "toy", False

        def loss(self, x, labels, generator):
            logits = self.forward(x)
            return F.cross_entropy(logits, labels, label_smoothing=0.1), logits

    try:
        assert TRAININGS["toy_smooth"].title == "Label smoothing" and "toy_smooth" not in BUILT_IN
        cfg = validate_config({"classifier": {"training": ["standard", "toy_smooth"]}})
        assert run_groups(cfg) == {"cifar10-standard": "standard", "cifar10-toy_smooth": "toy_smooth"}
    finally:
        unregister("toy_smooth")
    assert "toy_smooth" not in TRAININGS and "toy_smooth" not in REGISTRY
    with pytest.raises(ConfigError, match="unknown training method 'toy_smooth'"):
        validate_config({"classifier": {"training": "toy_smooth"}})


def test_the_readme_plug_in_with_its_declared_settings_block_trains_one_batch():
    """The README's worked example, as a user would paste it: its block `classifier.mixed_at` comes from the
    class (defaults filled, a bad value refused naming the key), and its loss trains."""
    import re

    from conftest import REPO as repo

    readme = (repo / "README.md").read_text()
    code = re.search(r"```python\n(from advdefense.robust_training import.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    try:
        cfg = validate_config({"classifier": {"training": "mixed_at"}})
        assert cfg["classifier"]["mixed_at"] == {"epsilon": 8 / 255, "steps": 5, "step_size": 2 / 255}
        assert TRAININGS["mixed_at"].passes(cfg["classifier"]["mixed_at"]) == 7
        with pytest.raises(ConfigError, match="classifier.mixed_at.steps: 0 is less than the minimum of 1"):
            validate_config({"classifier": {"training": "mixed_at", "mixed_at": {"steps": 0}}})
        x, y = _batch()
        model = _model()
        method = training_method("mixed_at", model, cfg["classifier"]["mixed_at"])
        loss, logits = method.loss(x, y, torch.Generator().manual_seed(0))
        loss.backward()
        assert math.isfinite(float(loss)) and logits.shape == (16, 10)
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    finally:
        unregister("mixed_at")
    with pytest.raises(ConfigError, match="classifier: Additional properties are not allowed"):
        validate_config({"classifier": {"mixed_at": {"steps": 2}}})


def test_side_by_side_puts_a_block_per_method_with_zero_sd_where_seeds_agreed(tmp_path):
    a = pd.DataFrame({"attack": ["fgsm", "pgd"], "accuracy": [0.2, 0.0], "accuracy_sd": [0.05, math.nan]})
    b = pd.DataFrame({"attack": ["fgsm", "pgd"], "accuracy": [0.5, 0.4], "accuracy_sd": [0.02, 0.03]})
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    table = gather_side_by_side(
        {"x-standard": tmp_path / "a.csv", "x-pgd_at": tmp_path / "b.csv"},
        {"x-standard": "standard", "x-pgd_at": "pgd_at"},
    )
    assert list(table.columns[:3]) == ["classifier", "training", "attack"]
    assert list(table["training"]) == ["standard", "standard", "pgd_at", "pgd_at"]
    assert table["classifier"][2] == TRAININGS["pgd_at"].title
    assert list(table["accuracy"]) == [0.2, 0.0, 0.5, 0.4]
    assert table["accuracy_sd"][1] == 0.0  # the seeds agreed: sd 0, not missing


def _synthetic(tmp_path, n_train, n_test):
    path = tmp_path / "synthetic.h5"
    write_dataset_h5(make_synthetic(n_train, n_test, seed=0, noise=0.05), path)
    return path


def test_positive_control_adversarial_training_is_robust_where_standard_training_is_not(tmp_path):
    """The harness can report robustness where it exists: on the synthetic data, at the same eps, PGD-10
    leaves the standard classifier with (almost) nothing and the PGD-trained one with most of its accuracy;
    the adversarially trained one's curve records its PGD accuracy per epoch."""
    data = _synthetic(tmp_path, 1200, 300)
    base = {"depth": 8, "width": 8, "epochs": 8, "batch_size": 50, "optimizer": {"lr": 0.05}}
    robust, clean = {}, {}
    for name in ("standard", "pgd_at"):
        settings = validate_config(
            {
                "classifier": {
                    **base,
                    "training": name,
                    "pgd_at": {"epsilon": EPS, "steps": 3, "step_size": EPS / 2},
                }
            }
        )["classifier"]
        out = tmp_path / name
        metrics = train_classifier(
            data,
            run_training_settings(settings, name),
            0,
            out / "model.pt",
            out / "metrics.json",
            out / "epochs.csv",
            out / "state.pt",
            device="cpu",
        )
        model = load_classifier(out / "model.pt").eval()
        test_x, test_y = _test_split(data)
        robust[name] = pgd_accuracy(model, test_x, test_y, EPS, 300)
        curve = pd.read_csv(out / "epochs.csv")
        assert ("test_pgd_accuracy" in curve.columns) == (name == "pgd_at")
        clean[name] = metrics["test_accuracy"]
        if name == "pgd_at":  # its curve's PGD accuracy is the same measure on the first test images
            assert curve["test_pgd_accuracy"].iloc[-1] > 0.2 and curve["test_pgd_accuracy"].iloc[0] < 0.3
    # measured (8 epochs, 1200 images): standard 99 % clean / 7 % under PGD-10; PGD-AT 59 % / 39 %
    assert clean["standard"] > 0.9 and clean["pgd_at"] > 0.4, clean
    assert robust["standard"] < 0.15 and robust["pgd_at"] > robust["standard"] + 0.2, robust
    assert json.loads((tmp_path / "pgd_at" / "metrics.json").read_text())["test_accuracy"] == clean["pgd_at"]


def _test_split(path):
    split = read_split(path, "test")
    x = torch.from_numpy(np.asarray(split.images, dtype=np.float32) / 255.0)
    return x, torch.from_numpy(np.asarray(split.labels, dtype=np.int64))


def test_a_list_of_methods_makes_one_classifier_per_method_and_side_by_side_tables(tmp_path):
    """Dry run: `classifier.training: [standard, fast_at]` with two seeds makes four classifiers, every stage
    once per run, each group's tables over seeds and each table side by side."""
    counts = {}
    for label, extra in (
        ("single", {}),
        ("two", {"seeds": [0, 1]}),
        ("both", {"seeds": [0, 1], "training": 1}),
    ):
        cfg = load_yaml(REPO / "config/smoke.yaml")
        cfg.update({k: v for k, v in extra.items() if k != "training"})
        if "training" in extra:
            cfg["classifier"]["training"] = ["standard", "fast_at"]
        configfile = tmp_path / f"{label}.yaml"
        configfile.write_text(yaml.safe_dump(cfg))
        proc = run_snakemake(tmp_path, configfile, "-n")
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts[label] = job_counts(proc.stdout)
    single, two, both = counts["single"], counts["two"], counts["both"]
    assert both["train_classifier"] == 4 and two["train_classifier"] == 2 and single["train_classifier"] == 1
    for rule, n in single.items():
        if rule not in (
            "all",
            "seed_table",
            "seed_figure_accuracy",
            "seed_figure_auroc",
            "reproduction_page",
        ):
            assert both[rule] == 4 * n, rule
    assert both["reproduction_page"] == 2 and single["reproduction_page"] == 1  # one page per group
    assert both["seed_table"] == 2 * two["seed_table"] and both["seed_figure_auroc"] == 2
    assert both["classifier_table"] == two["seed_table"] and "classifier_table" not in two


def test_the_mini_positive_control_config_makes_both_classifiers_over_three_seeds(mini_cifar, tmp_path):
    """config/cifar10-mini-robust.yaml (dry run): a standard and a fast-AT ResNet-20 for each of three seeds,
    FGSM, PGD, APGD, AutoAttack and Square at 8/255 on each, every registered purifier with the adaptive FGSM,
    PGD, APGD and Square through it, no Glow or detector; each group's tables over its seeds and each
    table side by side."""
    cfg = yaml.safe_load((REPO / "config/cifar10-mini-robust.yaml").read_text())
    cfg["dataset"]["path"] = str(mini_cifar)
    configfile = tmp_path / "robust.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, configfile, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    runs = 2 * 3
    assert counts["train_classifier"] == counts["dataset"] == counts["train_autoencoder"] == runs
    assert counts["attack"] == runs * 5 and counts["adaptive_attack"] == runs * 4 * len(PURIFIERS)
    assert counts["robustbench_info"] == 3 * runs  # APGD, AutoAttack and Square at 8/255 on each classifier
    assert "train_flow" not in counts and "detect" not in counts
    # summary and Table 3 per group over seeds, then side by side
    assert counts["seed_table"] == 2 * 2 and counts["classifier_table"] == 2
    assert validate_config(cfg)["classifier"]["training"] == ["standard", "fast_at"]


def test_the_detection_overlay_of_the_positive_control_adds_detection_only(mini_cifar, tmp_path):
    """config/mini-robust-detection.yaml over config/cifar10-mini-robust.yaml (dry run): the same six runs (no
    classifier or autoencoder more), FGSM and PGD on 1000 training images each beside the robust run's five
    test-split attacks, a Glow per run and every registered detector on both classifiers, gathered over seeds."""
    cfg = yaml.safe_load((REPO / "config/cifar10-mini-robust.yaml").read_text())
    cfg["dataset"]["path"] = str(mini_cifar)
    configfile = tmp_path / "robust.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    overlay = REPO / "config/mini-robust-detection.yaml"
    proc = run_snakemake(tmp_path, configfile, "-n")
    # a second --configfile replaces the first (argparse: the last one wins), with both files
    both = run_snakemake(tmp_path, configfile, "--configfile", str(configfile), str(overlay), "-n")
    assert proc.returncode == 0 and both.returncode == 0, both.stderr[-3000:]
    robust, counts = job_counts(proc.stdout + proc.stderr), job_counts(both.stdout + both.stderr)
    runs = 2 * 3
    for rule in (
        "train_classifier",
        "train_autoencoder",
        "adaptive_attack",
        "purify_attack",
        "robustbench_info",
    ):
        assert counts[rule] == robust[rule], rule
    assert counts["attack"] == robust["attack"] + runs * 2  # fgsm and pgd on the training split
    assert counts["train_flow"] == runs and counts["detect"] == runs * len(DETECTORS)
    assert counts["detection_tables"] == runs and counts["seed_table"] > robust["seed_table"]
