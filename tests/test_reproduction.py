"""The reproduction page (issue 45): intervals, the gathering over seeds, the verdicts, and the page of the smoke
run checked against the files it was made from."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from advdefense.plan.decisions import data_label, reproduction_epsilon
from advdefense.reproduction import (
    PAPER_ACCURACY,
    Row,
    auroc,
    bootstrap_detection,
    detection_numbers,
    gather,
    main,
    read_table,
    render,
    verdict,
    wilson,
)
from advdefense.tables import PAPER_TABLE3, PAPER_TABLE4

D = "synthetic-smoke"


def test_wilson_interval_matches_the_formula():
    low, high = wilson(50, 100)
    assert (round(low, 2), round(high, 2)) == (40.38, 59.62)
    low, high = wilson(
        0, 20
    )  # a proportion at 0 keeps a positive upper bound (the Wald interval would be 0..0)
    assert low == 0 and 13 < high < 18
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_auroc_and_the_detection_numbers():
    clean, attacked = np.arange(100.0), np.arange(100.0) + 1000
    assert auroc(clean, attacked) == 1.0 and auroc(attacked, clean) == 0.0
    assert auroc(np.zeros(50), np.zeros(50)) == 0.5  # ties count half
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=4000), rng.normal(1.0, size=4000)
    assert auroc(a, b) == pytest.approx(0.760, abs=0.01)  # Phi(1 / sqrt 2)
    area, accuracy = detection_numbers(clean, attacked, threshold=99.5)
    assert area == 1.0 and accuracy == 100.0
    (a_low, a_high), (c_low, c_high) = bootstrap_detection(a[:500], b[:500], threshold=1.0)
    point_area, point_accuracy = detection_numbers(a[:500], b[:500], 1.0)
    assert a_low < point_area < a_high and a_high - a_low < 0.1
    assert c_low < point_accuracy < c_high


def _row(quantity, paper, ours, low=math.nan, high=math.nan, n=100):
    return Row("s", quantity, paper, ours, low, high, n, 1, "Wilson", "like-for-like")


def test_gathering_over_seeds_is_a_t_interval_of_the_seed_means():
    seeds = [[_row("accuracy (%)", 88.29, v)] for v in (86.0, 88.0, 90.0)]
    table = gather(seeds)
    row = table.iloc[0]
    assert row["ours"] == pytest.approx(88.0) and row["seeds"] == 3
    half = 4.303 * 2.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(3)
    assert (row["low"], row["high"]) == (pytest.approx(88.0 - half), pytest.approx(88.0 + half))
    assert row["interval"] == "t over 3 seeds"
    one = gather([[_row("accuracy (%)", 88.29, 87.0, 86.0, 88.0)]]).iloc[0]
    assert (one["low"], one["high"], one["interval"]) == (86.0, 88.0, "Wilson")


def test_verdicts_follow_the_interval():
    assert verdict(pd.Series(_row("x", 50.0, 49.0, 45.0, 53.0).__dict__)).startswith("reproduced")
    assert verdict(pd.Series(_row("x", 52.39, 34.0, 31.0, 37.0).__dict__)) == "below the paper by 18.4 points"
    assert verdict(pd.Series(_row("x", math.nan, 34.0).__dict__)) == "—"
    page = render(
        gather([[_row("a (%)", 50.0, 49.0, 45.0, 53.0), _row("b (%)", 10.0, 30.0, 25.0, 35.0)]]), "T", "D"
    )
    assert "**Verdict:** 1 of the 2 numbers of the paper" in page
    assert "| a (%) | 50.00 | 49.0 | 45.0–53.0 (Wilson) | 100 | reproduced" in page


def test_data_labels_and_the_epsilon_compared():
    base = {
        "dataset": {
            "source": "local",
            "path": "resources/cifar-10-jpeg/cifar-10-batches-py",
            "labels": "fine",
        }
    }
    assert data_label(base) == "CIFAR-10 (JPEG copy)"
    assert data_label({"dataset": {"source": "synthetic"}}) == "synthetic data"
    assert data_label({"dataset": {"source": "cifar10"}}) == "CIFAR-10"
    attacks = {"fgsm": {"epsilons": [0.0078, 0.02]}, "pgd": {"epsilons": [0.03]}}
    assert reproduction_epsilon({"attacks": attacks}) == 0.02
    assert reproduction_epsilon({"attacks": {"pgd": {"epsilons": [0.03, 0.01]}}}) == 0.01
    assert reproduction_epsilon({"attacks": {"autoattack": {"epsilons": [0.02]}}}) is None


def test_a_table5_detector_that_did_not_train_on_one_attack_gets_no_mean(tmp_path):
    """The mini run's binary CNN stayed at chance on DeepFool (Table 5 prints "did not train"): the page failed to
    build (a float of that text); now that detector's row has no mean and says why, the others keep theirs."""
    from advdefense.reproduction import RunFiles, _table5_rows

    table = pd.DataFrame(
        {
            "method": ["Binary CNN", "PCA"],
            "fgsm_eps0.02 AUROC": [0.99, 0.98],
            "pgd_eps0.02 AUROC": [0.99, 0.96],
            "deepfool_eps0.02 AUROC": ["did not train", 0.59],
            "overall AUROC": [0.95, 0.87],
        }
    )
    table.to_csv(tmp_path / "table5.csv", index=False)
    files = RunFiles(tmp_path / "m.json", tmp_path / "s.csv", table5=tmp_path / "table5.csv")
    cnn, pca = _table5_rows(files, 0.02)
    assert math.isnan(cnn.ours) and cnn.comparison.startswith("did not train on deepfool_eps0.02: no mean")
    assert pca.ours == pytest.approx((0.98 + 0.96 + 0.59) / 3) and "did not train" not in pca.comparison


@pytest.mark.slow
def test_the_smoke_page_holds_the_numbers_of_its_files(smoke_run, tmp_path):
    """Every number of the smoke run's page is the one in the file it comes from; the paper detector's accuracy
    and AUROC recomputed from its per-image scores equal the detection job's own Table 4; the page renders again
    from its CSV alone, byte for byte."""
    results = smoke_run / "results"
    table = read_table(results / f"reproduction/{D}/reproduction.csv").set_index("quantity")
    metrics = json.loads((results / f"classifier/{D}/metrics.json").read_text())
    accuracy = table.loc["ResNet-20 test accuracy (%)"]
    assert (
        accuracy["ours"] == pytest.approx(100 * metrics["test_accuracy"])
        and accuracy["paper"] == PAPER_ACCURACY
    )
    assert accuracy["low"] < accuracy["ours"] < accuracy["high"] and accuracy["n"] == metrics["test_images"]
    summary = pd.read_csv(results / f"attacks/{D}/summary.csv").set_index(["attack", "split"])
    assert table.loc["PGD success at 0.03 (%)", "ours"] == pytest.approx(
        100 * summary.loc[("pgd", "test"), "success_rate"]
    )
    table3 = pd.read_csv(results / f"tables/{D}/table3_purification.csv").set_index("row")
    recovered = table3.loc["Autoencoder (paper): successful adversarials after purification"]
    counts = table3.loc["Successful adversarials: count"]
    for attack in ("fgsm", "pgd", "deepfool"):
        row = table.loc[f"Table 3: {attack} adversarials classified right after the autoencoder (%)"]
        assert (
            row["ours"] == pytest.approx(recovered[f"{attack} (eps=0.03)"])
            and row["paper"] == PAPER_TABLE3[attack]
        )
        assert row["n"] == counts[f"{attack} (eps=0.03)"]
        assert "epsilon 0.03 (differs: the paper's is 0.02)" in row["comparison"]
    pooled = table.loc["Table 3 overall: the three attacks' successful adversarials pooled (%)"]
    three = [f"{a} (eps=0.03)" for a in ("fgsm", "pgd", "deepfool")]
    expected = sum(recovered[c] * counts[c] for c in three) / sum(counts[c] for c in three)
    assert pooled["ours"] == pytest.approx(expected) and pooled["n"] == sum(counts[c] for c in three)
    # every purifier's per-image worst case over the adaptive attacks at the page's eps, as Table 3 has it
    for title in [
        r.split(": ")[0]
        for r in table3.index
        if r.endswith(": worst case over the adaptive attacks at its eps")
    ]:
        row = table.loc[
            f"defended accuracy at 0.03, worst case over every adaptive attack through {title} (%)"
        ]
        assert row["ours"] == pytest.approx(
            table3.loc[f"{title}: worst case over the adaptive attacks at its eps", three[0]]
        )
        assert row["ours"] <= table3.loc[f"{title}: adaptive attack through it", three].min() + 1e-9
    table4 = pd.read_csv(results / f"tables/{D}/table4_detection.csv").set_index("attack")
    for attack in ("fgsm", "pgd", "deepfool"):
        own = table4.loc[f"{attack}_eps0.03 (all images)"]
        row = table.loc[f"Table 4: {attack} balanced accuracy at 5 % FPR (%)"]
        assert (
            row["ours"] == pytest.approx(own["accuracy at 5% FPR (%)"])
            and row["paper"] == PAPER_TABLE4[attack]
        )
        assert table.loc[f"Table 4: {attack} AUROC", "ours"] == pytest.approx(own["AUROC"])
        assert row["low"] <= row["ours"] <= row["high"]
    page = (results / f"reproduction/{D}/reproduction.md").read_text()
    out = tmp_path / "again.md"
    assert (
        main(
            [
                str(results / f"reproduction/{D}/reproduction.csv"),
                "--title",
                f"Does the paper hold up? Run {D}",
                "--data",
                "synthetic data",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_text() == page
