"""Integration: the Snakemake DAG itself, on the smoke config (synthetic data, CPU)."""
import json

import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, job_counts, run_snakemake

pytestmark = pytest.mark.slow


def test_smoke_classifier_is_far_above_chance(smoke_run):
    metrics = json.loads((smoke_run / "results/classifier/synthetic-smoke/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9  # chance is 0.1
    assert metrics["epochs"] == 8 and metrics["device"] == "cpu" and metrics["parameters"] == 75_290
    assert set(metrics["per_class_accuracy"]) == {f"class{k}" for k in range(10)}
    epochs = pd.read_csv(smoke_run / "results/classifier/synthetic-smoke/epochs.csv")
    assert list(epochs["epoch"]) == list(range(1, 9))
    assert epochs["train_loss"].iloc[-1] < epochs["train_loss"].iloc[0]
    assert not (smoke_run / "results/classifier/synthetic-smoke/train_state.pt").exists()
    assert (smoke_run / "logs/classifier/synthetic-smoke.log").read_text().count("epoch") >= 8


def test_complete_run_has_nothing_left_to_do(smoke_run):
    proc = run_snakemake(smoke_run, smoke_run / "smoke.yaml", "-n")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_adding_an_epsilon_schedules_only_its_jobs(smoke_run, tmp_path):
    cfg = yaml.safe_load((smoke_run / "smoke.yaml").read_text())
    cfg["attacks"]["pgd"]["epsilons"].append(0.05)
    configfile = tmp_path / "more.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(smoke_run, configfile, "-n")
    assert proc.returncode == 0, proc.stderr
    # the new epsilon's attacks and latents (+ purification and adaptive attack on its test split),
    # and the aggregates that include it; nothing else
    assert job_counts(proc.stdout + proc.stderr) == {"attack": 2, "attack_summary": 1, "latents_attack": 2,
                                                     "purify_attack": 1, "adaptive_attack": 1, "table3": 1,
                                                     "detect": 4, "mmd_test": 1, "detection_tables": 1, "all": 1}
    assert "results/attacks/synthetic-smoke/pgd/eps0.05/train.h5" in proc.stdout + proc.stderr


@pytest.mark.parametrize("config", ["config.yaml", "smoke.yaml"])
def test_dry_run_lists_the_jobs(tmp_path, config):
    proc = run_snakemake(tmp_path, REPO / "config" / config, "-n")
    assert proc.returncode == 0, proc.stderr
    assert job_counts(proc.stdout + proc.stderr) == {"dataset": 1, "train_classifier": 1, "attack": 6,
                                                     "attack_summary": 1, "train_flow": 1, "latents_clean": 2,
                                                     "latents_attack": 6, "train_autoencoder": 1, "purify_clean": 1,
                                                     "purify_attack": 3 if config == "smoke.yaml" else 6,
                                                     "adaptive_attack": 3, "table3": 1, "detect": 4, "mmd_test": 1,
                                                     "detection_tables": 1, "all": 1}


def test_pretrained_flow_replaces_training(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    (tmp_path / "glow.pt").write_bytes(b"")
    (tmp_path / "hparams.json").write_text("{}")
    cfg["flow"]["source"] = "pretrained"
    cfg["flow"]["pretrained"] = {"checkpoint": str(tmp_path / "glow.pt"), "hparams": str(tmp_path / "hparams.json")}
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

    proc = subprocess.run([str(SNAKEMAKE), "--lint", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO)],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Lints for" not in out, out
