"""The benchmark command in its reduced mode, so that it cannot rot. No timing assertions."""
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_benchmark_quick_mode_produces_every_measurement(smoke_run, tmp_path):
    pytest.importorskip("torchattacks")
    out = tmp_path / "bench.csv"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks/run.py"), "--quick", "--device", "cpu",
                           "--smoke-dir", str(smoke_run), "--out", str(out)], capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = pd.read_csv(out)
    benchmarks = set(table["benchmark"])
    assert {"train ResNet-20", "latent extraction", "purification", "peak memory, attack stage",
            "peak memory, latents stage", "peak memory, merging 4 attack shards", "smoke DAG"} <= benchmarks
    assert any(b.startswith("PGD-") for b in benchmarks)
    training = table[table["benchmark"] == "train ResNet-20"].set_index("variant")
    assert len(training) == 5 and training.filter(like="ablation", axis=0).shape[0] == 2
    assert training["ratio_vs_best_alternative"].notna().sum() == 3  # ours and its two ablations
    autoattack = table[table["benchmark"].str.startswith("AutoAttack")]
    assert len(autoattack) == 2 and autoattack["robust_accuracy"].between(0, 1).all()
    assert autoattack["ratio_vs_best_alternative"].notna().sum() == 1
    memory = table[table["benchmark"].str.startswith("peak memory")]
    assert len(memory) == 6 and (memory["stage_peak_mb"] > 0).all() and (memory["peak_rss_mb"] > 0).all()
    speed = table.dropna(subset=["images_per_s"])
    assert (speed["images_per_s"] > 0).all()
    ratios = table.dropna(subset=["ratio_vs_best_alternative"])
    assert len(ratios) >= 5 and (ratios["ratio_vs_best_alternative"] > 0).all()
    smoke = table[table["benchmark"] == "smoke DAG"]
    assert "rule train_classifier" in set(smoke["variant"]) and "rule attack" in set(smoke["variant"])
    total = smoke[smoke["variant"].str.startswith("all rules")].iloc[0]
    assert total["jobs"] == 48  # every job of the smoke DAG (all but the target rule `all`) left a benchmark file
    assert "written:" in proc.stdout and "ratio_vs_best_alternative" in proc.stdout
