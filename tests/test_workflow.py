"""Integration: the Snakemake DAG itself, on the smoke config (synthetic data, CPU)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.purifier_specs import PURIFIERS
from conftest import REPO, SNAKEMAKE, job_counts, run_snakemake

pytestmark = pytest.mark.slow


def test_smoke_classifier_is_far_above_chance(smoke_run):
    metrics = json.loads((smoke_run / "results/classifier/synthetic-smoke/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9  # chance is 0.1
    assert metrics["epochs"] == 5 and metrics["device"] == "cpu" and metrics["parameters"] == 75_290
    assert set(metrics["per_class_accuracy"]) == {f"class{k}" for k in range(10)}
    epochs = pd.read_csv(smoke_run / "results/classifier/synthetic-smoke/epochs.csv")
    assert list(epochs["epoch"]) == list(range(1, 6))
    assert epochs["train_loss"].iloc[-1] < epochs["train_loss"].iloc[0]
    assert not (smoke_run / "results/classifier/synthetic-smoke/train_state.pt").exists()
    assert (smoke_run / "logs/classifier/synthetic-smoke.log").read_text().count("epoch") >= 5


def test_complete_run_has_nothing_left_to_do(smoke_run):
    proc = run_snakemake(smoke_run, smoke_run / "smoke.yaml", "-n")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_adding_an_epsilon_schedules_only_its_jobs(smoke_run, tmp_path):
    # work on a copy (mtimes and Snakemake's metadata included) so other tests keep the original run
    smoke_run = Path(shutil.copytree(smoke_run, tmp_path / "run", symlinks=True))
    cfg = yaml.safe_load((smoke_run / "smoke.yaml").read_text())
    cfg["attacks"]["pgd"]["epsilons"].append(0.05)
    configfile = tmp_path / "more.yaml"
    configfile.write_text(
        yaml.safe_dump(cfg, sort_keys=False)
    )  # the attacks in their order: Figure 1 shows the first three
    proc = run_snakemake(smoke_run, configfile, "-n")
    assert proc.returncode == 0, proc.stderr
    # the new epsilon's attacks and latents (+ purification and adaptive attack on its test split, through
    # every registered purifier), and the aggregates that include it; nothing else
    assert job_counts(proc.stdout + proc.stderr) == {
        "attack": 2,
        "attack_summary": 1,
        "latents_attack": 2,
        "purify_attack": len(PURIFIERS),
        "adaptive_attack": len(PURIFIERS),
        "table3": 1,
        "detect": len(DETECTORS),  # every registered detector (detection.methods: null)
        "mmd_test": 1,
        "detection_tables": 1,
        "figure_accuracy_eps": 1,
        "figure_auroc_eps": 1,
        "figure_detection": 1,
        "reproduction_page": 1,  # the run's page: the paper's numbers beside ours
        "corruption_tables": 1,  # the detectors' false alarms, beside their detection rates
        "all": 1,
    }
    assert "results/attacks/synthetic-smoke/pgd/eps0.05/train.h5" in proc.stdout + proc.stderr

    # run the new epsilon's own jobs and the attack summary: the new files appear, and nothing that existed
    # before is rewritten (the detection jobs that retrain on the new files, and the other purifiers' jobs that
    # Table 3 would wait for, are left out: CI minutes)
    before = {
        p: p.stat().st_mtime_ns
        for p in (smoke_run / "results").rglob("*")
        if p.is_file() and "benchmarks" not in p.parts
    }
    new = [
        f"results/{kind}/synthetic-smoke/pgd/eps0.05/{split}.h5"
        for kind in ("attacks", "latents")
        for split in ("train", "test")
    ]
    new += [
        "results/purified/synthetic-smoke/autoencoder/pgd/eps0.05/test.h5",
        "results/adaptive/synthetic-smoke/autoencoder/pgd/eps0.05/test.h5",
        "results/attacks/synthetic-smoke/summary.csv",
    ]
    proc = run_snakemake(smoke_run, configfile, targets=tuple(new))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (smoke_run / "results/attacks/synthetic-smoke/pgd/eps0.05/test.h5").is_file()
    assert all((smoke_run / target).is_file() for target in new)
    assert job_counts(proc.stdout + proc.stderr) == {
        "attack": 2,
        "attack_summary": 1,
        "latents_attack": 2,
        "purify_attack": 1,
        "adaptive_attack": 1,
    }
    aggregates = (
        "summary.csv",
        "table3_purification",
        "table4_detection",
        "table5_comparison",
        "detection_generalisation",
        "detection_defended",
        "evaluation.csv",
        "aware.csv",
        "power.csv",  # tables over all epsilons
        "accuracy_vs_epsilon.png",
        "auroc_vs_epsilon.png",
        "roc_latent_detector.png",
        "scores_latent_detector.png",
        "accuracy_vs_epsilon.csv",
        "auroc_vs_epsilon.csv",
    )  # figures
    rewritten = [
        p
        for p, mtime in before.items()
        if p.exists()
        and p.stat().st_mtime_ns != mtime
        and not any(a in p.name for a in aggregates)
        and "models" not in p.parts
    ]
    assert rewritten == []
    table = pd.read_csv(smoke_run / "results/attacks/synthetic-smoke/summary.csv")
    assert sorted(table.loc[table.attack == "pgd", "epsilon"].unique()) == [0.03, 0.05]


@pytest.mark.parametrize("config", ["config.yaml", "smoke.yaml"])
def test_dry_run_lists_the_jobs(tmp_path, config):
    proc = run_snakemake(tmp_path, REPO / "config" / config, "-n")
    assert proc.returncode == 0, proc.stderr
    # paper: FGSM, PGD, AutoAttack at 6 L-inf epsilons, DeepFool at 0.02, PGD and AutoAttack at 2 L2 epsilons, the
    # paper's 3 rounded to 8 bits at 0.02: 26 (attack, epsilon) pairs; Table 3 (adaptive) on FGSM, PGD, DeepFool
    paper = config == "config.yaml"
    attacks = 52 if paper else 8  # smoke: 4 attacks; both splits
    assert job_counts(proc.stdout + proc.stderr) == {
        "dataset": 1,
        "train_classifier": 1,
        "attack": attacks,
        "attack_summary": 1,
        "train_flow": 1,
        "latents_clean": 3,
        "latents_attack": attacks,
        "train_autoencoder": 1,
        # every registered purifier (purification.methods: null)
        "purify_clean": len(PURIFIERS),
        "purify_attack": (52 if paper else 4) * len(PURIFIERS),
        "adaptive_attack": (13 if paper else 3) * len(PURIFIERS),  # Table 3's columns, through each purifier
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
        "all": 1,
        # smoke: two natural corruptions (one file each), the accuracy job and the three tables
        **({} if paper else {"corrupt": 2, "corruption_accuracy": 1, "corruption_tables": 1}),
        # a RobustBench model_info entry per AutoAttack file of the test split (6 L-inf, 2 L2 epsilons)
        **({"robustbench_info": 8} if paper else {}),
    }


def test_pretrained_flow_replaces_training(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    (tmp_path / "glow.pt").write_bytes(b"")
    (tmp_path / "hparams.json").write_text("{}")
    cfg["flow"]["source"] = "pretrained"
    cfg["flow"]["pretrained"] = {
        "checkpoint": str(tmp_path / "glow.pt"),
        "hparams": str(tmp_path / "hparams.json"),
    }
    configfile = tmp_path / "pre.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, configfile, "-n")
    assert proc.returncode == 0, proc.stderr
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["import_flow"] == 1 and "train_flow" not in counts


def test_bad_config_stops_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["classifier"]["depth"] = 10
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, configfile, "-n")
    assert proc.returncode != 0
    assert "classifier.depth: 10 is not of the form 6n+2" in proc.stderr + proc.stdout


def test_lint_is_clean(tmp_path):
    import subprocess

    proc = subprocess.run(
        [str(SNAKEMAKE), "--lint", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out


def test_figures_and_report(smoke_run, tmp_path):
    figures = smoke_run / "results/figures/synthetic-smoke"
    names = [
        "figure1_examples.png",
        "accuracy_vs_epsilon.png",
        "auroc_vs_epsilon.png",
        "roc_latent_detector.png",
        "scores_latent_detector.png",
        "training_curves.png",
    ]
    for name in names:
        data = (figures / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    report = tmp_path / "report.html"
    proc = run_snakemake(smoke_run, smoke_run / "smoke.yaml", "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text(errors="replace")
    for name in names + [
        "table3_purification.csv",
        "table4_detection.csv",
        "table5_comparison.csv",
        "detection_generalisation.csv",
        "summary.csv",
    ]:
        assert name in html, name
    assert "Figure 1." in html and "ROC curves of the latent detector" in html


def test_snakefmt_check_is_clean():
    """The Snakefile and every rule file are as `snakefmt` formats them (what catalogue workflows follow)."""
    import subprocess

    snakefmt = SNAKEMAKE.with_name("snakefmt")
    proc = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "workflow/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


PYTHON_CODE = ["src", "tests", "workflow/scripts", "benchmarks"]


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["ruff-format", "ruff-check"])
def test_python_code_is_formatted_and_lint_clean(command):
    """The Python code is as `ruff format` writes it, and `ruff check` (rules in pyproject.toml) finds nothing."""
    import subprocess

    ruff = SNAKEMAKE.with_name("ruff")
    proc = subprocess.run(
        [str(ruff), *command, *PYTHON_CODE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_workflow_profile_caps_nothing():
    """Snakemake loads profiles/default on every run, over any --profile: a cap there (cores, a gpu token, a job
    limit) would throttle a cluster run (a `gpu=1` there once ran one GPU job at a time on all of SLURM). The
    local caps live in profiles/local, which --profile names."""
    import yaml

    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert not {"cores", "resources", "jobs", "executor", "default-resources"} & set(default)
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["resources"] == ["gpu=1"] and local["cores"] >= 1


def test_workflow_catalog_metadata_describes_standard_usage():
    meta = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())
    usage = meta["usage"]
    assert set(usage) == {"mandatory-flags", "software-stack-deployment", "report"}
    flags = usage["mandatory-flags"]["flags"]
    assert (
        flags == "--resources gpu=1" and flags in (REPO / "README.md").read_text()
    )  # the README's commands use it
    deployment = usage["software-stack-deployment"]
    # the catalogue's current keys (its build_wf_pages.py renders exactly these), every value a boolean
    assert set(deployment) <= {"conda", "apptainer", "apptainer+conda"}, deployment
    assert all(isinstance(v, bool) for v in deployment.values()) and any(deployment.values())
    assert deployment["conda"] is True and (REPO / "envs/pipeline.yaml").is_file()
    assert usage["report"] is True and "report:" in (REPO / "Snakefile").read_text()
    assert (REPO / "config/README.md").is_file() and (REPO / "config/config.yaml").is_file()


def test_auroc_figure_plots_each_detector_at_each_epsilon(smoke_run):
    from advdefense.figures import auroc_by_epsilon

    files = sorted((smoke_run / "results/detection/synthetic-smoke").glob("*/evaluation.csv"))
    table = auroc_by_epsilon(files)
    methods = {p.parent.name for p in files}
    assert set(table["method"]) == methods and set(table["attack"]) == {"fgsm", "pgd", "deepfool", "pgd_8bit"}
    assert len(table) == len(methods) * 4 and (table["epsilon"] == 0.03).all()
    for row in table.itertuples():  # the honest-set AUROC of the detector trained and tested on that attack
        ev = pd.read_csv(smoke_run / f"results/detection/synthetic-smoke/{row.method}/evaluation.csv")
        key = f"{row.attack}_eps0.03"
        match = ev[(ev["train"] == key) & (ev["test"] == key) & (ev["set"] == "honest")]
        assert len(match) == 1 and match["auroc"].iloc[0] == pytest.approx(row.auroc)
