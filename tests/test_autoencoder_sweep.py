"""Issue 41: the autoencoder sweep (Table 3 settled by experiment) as a config overlay the workflow runs."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.plan import decisions
from advdefense.plan.names import file_sha256
from advdefense.plan.purifier_specs import purifier_kind, purifier_spec, sweep_point, sweep_purifier
from advdefense.purified_files import read_purified
from advdefense.reproduction import PAPER_TABLE3, SWEEP, _split_quantity, read_table, render, sweep_verdict
from conftest import REPO, job_counts, load_config, run_snakemake

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
POINTS = {  # two tiny points: the test is about the plumbing and the numbers' provenance, not about quality
    "code128": {"widths": [8, 2], "epochs": 1},
    "code512_noise": {"widths": [8, 8], "epochs": 1, "noise_std": 0.05, "optimizer": {"lr": 0.003}},
}


def sweep_overlay(**extra) -> dict:
    return {"purification": {"autoencoder_sweep": {"epsilon": 0.03, "points": POINTS, **extra}}}


def smoke_with_sweep(**extra) -> dict:
    cfg = load_config("smoke.yaml")
    cfg["purification"].update(sweep_overlay(**extra)["purification"])
    return cfg


# ----------------------------------------------------------------------------- plan and config
def test_point_settings_are_the_autoencoder_block_with_the_points_keys():
    cfg = validate_config(smoke_with_sweep(), SCHEMA)
    sweep = decisions.autoencoder_sweep(cfg)
    assert list(sweep) == list(POINTS)  # the config's order
    base = cfg["autoencoder"]
    assert sweep["code128"]["widths"] == [8, 2] and sweep["code128"]["epochs"] == 1
    assert sweep["code128"]["noise_std"] == base["noise_std"]  # not named by the point: the block's
    # a nested key replaces only itself
    assert sweep["code512_noise"]["optimizer"] == {**base["optimizer"], "lr": 0.003}
    for settings in sweep.values():  # runtime keys stay out of what a training job is given
        assert "resources" not in settings and "eval_batch_size" not in settings
    assert decisions.sweep_purifiers(cfg) == ["autoencoder.code128", "autoencoder.code512_noise"]
    assert decisions.sweep_columns(cfg) == [("fgsm", 0.03), ("pgd", 0.03), ("deepfool", 0.03)]
    assert decisions.sweep_adaptive(cfg) == ("pgd", 0.03)
    # no points: no sweep, and the run is what it was
    assert decisions.autoencoder_sweep(validate_config(load_config("smoke.yaml"), SCHEMA)) == {}


def test_a_sweep_point_is_the_autoencoder_purifier_under_its_own_name():
    name = sweep_purifier("code128")
    assert name == "autoencoder.code128" and sweep_point(name) == "code128"
    assert purifier_kind(name) == "autoencoder" and purifier_kind("jpeg") == "jpeg"
    spec = purifier_spec(name)
    assert spec.needs == ("autoencoder",) and spec.gradient == "exact" and "code128" in spec.title
    assert sweep_point("autoencoder") is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epsilon": 0.02}, "does not run at purification.autoencoder_sweep.epsilon 0.02"),
        ({"attacks": ["cw"]}, "purification.autoencoder_sweep.attacks: 'cw' is not a configured attack"),
        (
            {"adaptive": "square"},
            "purification.autoencoder_sweep.adaptive: 'square' is not a configured attack",
        ),
    ],
)
def test_bad_sweep_settings_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(smoke_with_sweep(**change), SCHEMA)


def test_bad_point_names_and_keys_are_refused():
    cfg = smoke_with_sweep()
    cfg["purification"]["autoencoder_sweep"]["points"] = {"a/b": {"widths": [8, 2]}}
    with pytest.raises(ConfigError, match="a/b"):
        validate_config(cfg, SCHEMA)
    cfg = smoke_with_sweep()
    cfg["purification"]["autoencoder_sweep"]["points"] = {"p": {"width": [8, 2]}}
    with pytest.raises(ConfigError, match="width"):
        validate_config(cfg, SCHEMA)
    cfg = smoke_with_sweep()
    cfg["purification"]["enabled"] = False
    with pytest.raises(ConfigError, match="purification.enabled"):
        validate_config(cfg, SCHEMA)


def test_a_brought_point_is_pinned_and_alone(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"not really a model")
    good = {"checkpoint": str(model), "sha256": file_sha256(model)}
    for point, message in (
        ({"checkpoint": str(model)}, "needs both checkpoint and sha256"),
        ({**good, "widths": [8, 2]}, "widths beside checkpoint"),
        ({**good, "sha256": "0" * 64}, "points.mine.sha256: .* has sha256"),
        ({"checkpoint": str(tmp_path / "absent.pt"), "sha256": "0" * 64}, "absent.pt is not a file"),
    ):
        cfg = smoke_with_sweep()
        cfg["purification"]["autoencoder_sweep"]["points"] = {"mine": point}
        with pytest.raises(ConfigError, match=message):
            validate_config(cfg, SCHEMA)
    cfg = smoke_with_sweep()
    cfg["purification"]["autoencoder_sweep"]["points"] = {**POINTS, "mine": good}
    cfg = validate_config(cfg, SCHEMA)
    assert decisions.brought_points(cfg) == ["mine"] and decisions.trained_points(cfg) == list(POINTS)
    assert decisions.autoencoder_sweep(cfg)["mine"] == good  # as given: nothing of the block merged in


def test_the_full_size_overlay_sweeps_code_size_noise_and_training_length(tmp_path):
    from test_full_size import write_cifar_standin

    overlay = load_yaml(REPO / "config/autoencoder-sweep.yaml")
    full = load_yaml(REPO / "config/cifar10-full.yaml")
    cfg = copy.deepcopy(full)
    cfg["purification"] = {**cfg.get("purification", {}), **overlay["purification"]}
    cfg["dataset"]["path"] = str(write_cifar_standin(tmp_path / "data", train_per_batch=1000, test=2000))
    sweep = decisions.autoencoder_sweep(validate_config(cfg, SCHEMA))
    codes = sorted({s["widths"][1] * 64 for s in sweep.values()})
    assert len(codes) >= 4 and codes[0] < 3072 / 4 and codes[-1] > 3072  # well below to above the image
    assert {s["noise_std"] for s in sweep.values()} == {0.0, 0.025}
    assert len({s["epochs"] for s in sweep.values()}) >= 3  # early, the run's own, late
    assert sweep["code1024"] == {
        k: v
        for k, v in validate_config(full | {"dataset": cfg["dataset"]}, SCHEMA)["autoencoder"].items()
        if k not in ("resources", "eval_batch_size")
    }  # the run's own autoencoder is a point


# ----------------------------------------------------------------------------- the workflow
@pytest.mark.slow
def test_the_sweep_overlay_adds_only_its_jobs_and_its_numbers_come_from_the_files(smoke_run, tmp_path):
    run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    # a third point brings the run's own autoencoder (as the 2 x 2 cross brings another run's): its numbers must be
    # Table 3's autoencoder rows, the same model on the same files
    own = run / "results/autoencoder/synthetic-smoke/model.pt"
    trained = dict(list(POINTS.items())[1:])  # one trained point (the nested optimizer key): CI minutes
    points_here = {**trained, "own": {"checkpoint": str(own), "sha256": file_sha256(own)}}
    overlay = tmp_path / "sweep.yaml"
    overlay.write_text(
        yaml.safe_dump({"purification": {"autoencoder_sweep": {"epsilon": 0.03, "points": points_here}}})
    )
    proc = run_snakemake(run, run / "smoke.yaml", "-n", "--configfile", str(run / "smoke.yaml"), str(overlay))
    assert proc.returncode == 0, proc.stderr
    columns, points = 3, len(points_here)
    assert job_counts(proc.stdout + proc.stderr) == {
        "train_autoencoder_point": len(trained),
        "import_autoencoder_point": 1,
        "purify_clean": points,
        "purify_attack": points * columns,  # the paper's three attacks, test split only
        "adaptive_attack": points,  # PGD through each point
        "autoencoder_sweep": 1,
        "reproduction_page": 1,
        "all": 1,
    }
    before = {p: p.stat().st_mtime_ns for p in (run / "results").rglob("*.h5")}
    proc = run_snakemake(run, run / "smoke.yaml", "--configfile", str(run / "smoke.yaml"), str(overlay))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing that existed was redone

    tables = run / "results/tables/synthetic-smoke"
    table = pd.read_csv(tables / "autoencoder_sweep.csv").set_index("point")
    assert list(table.index) == list(points_here)
    table3 = pd.read_csv(tables / "table3_purification.csv").set_index("row")
    ae = "Autoencoder (paper)"
    for attack in ("fgsm", "pgd", "deepfool"):
        column = f"{attack} (eps=0.03)"
        assert table.loc["own", f"recovery_{attack}"] == pytest.approx(
            table3.loc[f"{ae}: successful adversarials after purification", column], abs=1e-3
        )
    assert table.loc["own", "clean_accuracy"] == pytest.approx(
        table3.loc[f"{ae}: clean images", "pgd (eps=0.03)"]
    )
    assert table.loc["own", "adaptive_accuracy"] == pytest.approx(
        table3.loc[f"{ae}: adaptive attack through it", "pgd (eps=0.03)"]
    )
    assert table.loc["own", "source"] == "brought" and table.loc["own", "epochs"] == 12  # its run's metrics
    for point, settings in points_here.items():
        row, name = table.loc[point], sweep_purifier(point)
        metrics = json.loads(
            (run / f"results/autoencoder/synthetic-smoke/sweep/{point}/metrics.json").read_text()
        )
        widths = settings.get("widths") or metrics["architecture"]["widths"]
        assert row["code_values"] == widths[1] * 64 == metrics["code_values"]
        assert row["test_psnr"] == pytest.approx(metrics["test_psnr"], abs=1e-3)
        assert row["epochs"] == settings.get("epochs", 12)
        # recovery: the successful adversarials of the three attacks pooled, right after this autoencoder
        right, total = 0, 0
        for attack in ("fgsm", "pgd", "deepfool"):
            p = read_purified(run / f"results/purified/synthetic-smoke/{name}/{attack}/eps0.03/test.h5")
            assert p.attrs["purifier"] == name
            success = p.success.astype(bool)
            right += int((p.pred_purified == p.label)[success].sum())
            total += int(success.sum())
            assert row[f"successful_{attack}"] == success.sum()
        assert row["recovery_overall"] == pytest.approx(100 * right / total, abs=1e-3)
        clean = read_purified(run / f"results/purified/synthetic-smoke/{name}/clean/test.h5")
        through = clean.pred_purified == clean.label
        assert row["clean_accuracy"] == pytest.approx(100 * through.mean(), abs=1e-3)
        # the adaptive attack through the point: no more accurate than the clean images through it (same images)
        from advdefense.attack_files import read_attack_file

        adaptive = read_attack_file(
            run / f"results/adaptive/synthetic-smoke/{name}/pgd/eps0.03/test.h5",
            require=("index", "label", "pred_adv"),
        )
        assert row["adaptive_accuracy"] == pytest.approx(100 * (adaptive.pred_adv == adaptive.label).mean())
        same = np.isin(clean.index, adaptive.index)
        assert row["adaptive_accuracy"] <= 100 * through[same].mean() + 2.0

    by_size = pd.read_csv(tables / "autoencoder_sweep_by_size.csv")
    for (point, attack), group in by_size.groupby(["point", "attack"]):
        assert group["images"].sum() == table.loc[point, f"successful_{attack}"]
        assert group["median_l2"].is_monotonic_increasing  # quartiles in order of perturbation size
    assert (run / "results/figures/synthetic-smoke/autoencoder_sweep.png").stat().st_size > 10_000

    # the page: every point with its recovery against the paper's, and a verdict made from those numbers
    page_csv = run / "results/reproduction/synthetic-smoke/reproduction.csv"
    gathered = read_table(page_csv)
    sweep_rows = _split_quantity(gathered[gathered["section"] == SWEEP])
    overall = sweep_rows[sweep_rows["metric"] == "recovery overall (%)"].set_index("item")
    assert overall["ours"].to_dict() == pytest.approx(table["recovery_overall"].to_dict(), abs=1e-3)
    assert (overall["paper"] == PAPER_TABLE3["overall"]).all()
    closest = (table["recovery_overall"] - PAPER_TABLE3["overall"]).abs().idxmin()
    assert sweep_verdict(sweep_rows).startswith(f"closest to the paper's 52.39 % is {closest} ")
    page = (run / "results/reproduction/synthetic-smoke/reproduction.md").read_text()
    assert "## Table 3 settled by experiment" in page and all(f"| {p} |" in page for p in points_here)
    assert "brought from another run" in page
    assert "Recovery against perturbation size" in page
    assert render(gathered, *_page_title_and_data(page)) == page  # the page is its CSV, rendered

    # the front page (docs/results.md) of this run: the sweep's section and the workflow's figure
    from advdefense.front_page import collect, render_front_page

    collect(
        run / "results", "synthetic-smoke", ["synthetic-smoke"], "main", "synthetic data", tmp_path / "data"
    )
    front = render_front_page(tmp_path / "data")
    assert (
        "### Table 3 settled by experiment" in front
        and "(data/synthetic-smoke/autoencoder_sweep.png)" in front
    )
    assert (tmp_path / "data/synthetic-smoke/autoencoder_sweep.png").read_bytes() == (
        run / "results/figures/synthetic-smoke/autoencoder_sweep.png"
    ).read_bytes()


def _page_title_and_data(page: str) -> tuple[str, str]:
    title = page.splitlines()[0].removeprefix("# ")
    data = page.split("from `", 1)[1].split("`", 1)[0]
    return title, data
