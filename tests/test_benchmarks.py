"""The benchmark command in its reduced mode, so that it cannot rot. No timing assertions."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.jobs import AttackJob
from advdefense.plan.purifier_specs import PURIFIERS
from conftest import REPO

pytestmark = pytest.mark.slow


def test_benchmark_quick_mode_produces_every_measurement(smoke_run, tmp_path):
    pytest.importorskip("torchattacks")
    out = tmp_path / "bench.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks/run.py"),
            "--quick",
            "--device",
            "cpu",
            "--smoke-dir",
            str(smoke_run),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = pd.read_csv(out)
    benchmarks = set(table["benchmark"])
    assert {
        "train ResNet-20",
        "latent extraction",
        "purification",
        "peak memory, attack stage",
        "peak memory, latents stage",
        "peak memory, merging 4 attack shards",
        "smoke DAG",
    } <= benchmarks
    assert any(b.startswith("PGD-") for b in benchmarks)
    training = table[table["benchmark"] == "train ResNet-20"].set_index("variant")
    assert len(training) == 5 and training.filter(like="ablation", axis=0).shape[0] == 2
    assert training["ratio_vs_best_alternative"].notna().sum() == 3  # ours and its two ablations
    autoattack = table[table["benchmark"].str.startswith("AutoAttack")]
    assert len(autoattack) == 2 and autoattack["robust_accuracy"].between(0, 1).all()
    assert autoattack["ratio_vs_best_alternative"].notna().sum() == 1
    # quick mode labels the images with the network's own predictions: every image starts classified correctly
    assert autoattack["benchmark"].str.endswith("labels = its predictions").all()
    # every row says which CPU its figure comes from
    assert table["cpu"].notna().all() and (table["cpu"].str.len() > 0).all()
    memory = table[table["benchmark"].str.startswith("peak memory")]
    assert len(memory) == 6 and (memory["stage_peak_mb"] > 0).all() and (memory["peak_rss_mb"] > 0).all()
    speed = table.dropna(subset=["images_per_s"])
    assert (speed["images_per_s"] > 0).all()
    ratios = table.dropna(subset=["ratio_vs_best_alternative"])
    assert len(ratios) >= 5 and (ratios["ratio_vs_best_alternative"] > 0).all()
    smoke = table[table["benchmark"] == "smoke DAG"]
    assert "rule train_classifier" in set(smoke["variant"]) and "rule attack" in set(smoke["variant"])
    total = smoke[smoke["variant"].str.startswith("all rules")].iloc[0]
    # every job of the smoke DAG (all but the target rule `all`) left a benchmark file: 33 jobs (the reproduction page
    # among them), a detect job per registered detector (detection.methods: null), per registered purifier
    # (purification.methods: null) 4 purified attack files, its clean file and the adaptive attacks of Table 3's 3
    # columns, and the corruptions' 4 (two files, the accuracy job, the tables)
    assert total["jobs"] == 33 + len(DETECTORS) + len(PURIFIERS) * (4 + 1 + 3) + 4
    assert "written:" in proc.stdout and "ratio_vs_best_alternative" in proc.stdout


def test_autoattack_agreement_script_compares_our_file_with_torchattacks(smoke_run, tmp_path):
    """benchmarks/autoattack_agreement.py on an AutoAttack file of the smoke run's classifier: it reads our robust
    accuracy from the file, runs torchattacks on the same 20 images, and exits 0 within the tolerance; a file whose
    adversarials were all "robust" is beyond it, and the script says so (exit 1). (How closely the two agree is
    measured on more images: tests/test_autoattack.py, and the work log, docs/notes/ on the mini CIFAR-10 classifiers.)"""
    pytest.importorskip("torchattacks")
    import h5py

    from advdefense.attacks import generate_attack_file

    data, model = (
        smoke_run / "results/data/synthetic-smoke.h5",
        smoke_run / "results/classifier/synthetic-smoke/model.pt",
    )
    spec = {"class": "AutoAttack", "norm": "linf", "params": {"version": "standard"}, "epsilons": [8 / 255]}
    ours = tmp_path / "aa.h5"
    generate_attack_file(
        data,
        model,
        AttackJob(name="autoattack", spec=spec, eps=8 / 255, split="test", images=20, seed=0, batch_size=20),
        ours,
        device="cpu",
    )
    script = [sys.executable, str(REPO / "benchmarks/autoattack_agreement.py")]
    out = tmp_path / "agreement.csv"
    proc = subprocess.run(
        [*script, str(ours), str(data), str(model), "--tolerance", "0.2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    row = pd.read_csv(out).iloc[0]
    with h5py.File(ours, "r") as f:
        assert row["robust_ours"] == pytest.approx((f["pred_adv"][()] == f["label"][()]).mean())
    assert row["images"] == 20 and row["agree"] and row["robust_ours"] < row["clean_accuracy"] - 0.2
    assert row["robust_torchattacks"] < row["clean_accuracy"] - 0.2  # torchattacks' attack works too
    assert (
        row["gap"] == pytest.approx(abs(row["robust_ours"] - row["robust_torchattacks"]))
        and row["gap"] <= 0.2
    )

    with h5py.File(ours, "r+") as f:  # as if our attack had fooled nothing
        f["pred_adv"][...] = f["label"][()]
    proc = subprocess.run(
        [*script, str(ours), str(data), str(model), "--tolerance", "0.2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1 and "agree: False" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_perturbation_texture_measures_how_often_neighbours_move_alike(smoke_run):
    """benchmarks/perturbation_texture.py: independent signs give about 50 %, flat patches 100 %, alternating signs
    0 %, pixels left unmoved do not count, nothing moved is an error; on a smoke attack file it prints the share
    computed from the file's adversarials and the dataset's clean images."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from perturbation_texture import same_sign_share
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    assert same_sign_share(rng.choice([-1.0, 1.0], size=(50, 3, 32, 32))) == pytest.approx(50, abs=1)
    assert same_sign_share(np.full((2, 3, 8, 8), 0.03)) == 100
    alternating = np.tile([0.03, -0.03], 4)[None, None, None, :].repeat(8, 2)
    assert same_sign_share(alternating) == 0
    half = np.full((1, 1, 1, 6), 0.03)
    half[..., 3] = 0  # unmoved: the pairs (2, 3) and (3, 4) do not count
    half[..., 5] = -0.03
    assert same_sign_share(half) == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError, match="nothing to measure"):
        same_sign_share(np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="N x C x H x W"):
        same_sign_share(np.zeros((3, 4, 4)))

    from advdefense.attack_files import read_attack_file
    from advdefense.data import read_dataset_h5

    data = smoke_run / "results/data/synthetic-smoke.h5"
    path = smoke_run / "results/attacks/synthetic-smoke/pgd/eps0.03/test.h5"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/perturbation_texture.py"), str(data), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    attack = read_attack_file(path)
    clean = read_dataset_h5(data).test.images[attack.index].astype(np.float32) / 255.0
    expected = same_sign_share(attack.adv.astype(np.float32) - clean)
    assert f"{len(clean)} images\t{expected:.1f} % of neighbours" in proc.stdout
