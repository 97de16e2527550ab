"""`seeds`: the pipeline once per seed, its tables gathered into mean and sd over seeds."""

import numpy as np
import pandas as pd
import pytest
import yaml

from advdefense.config import ConfigError, validate_config
from advdefense.errors import PipelineFileError
from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.purifier_specs import PURIFIERS
from advdefense.seeds import gather_over_seeds, mean_sd_markdown
from conftest import REPO, job_counts, run_snakemake

D = "synthetic-smoke"
PURIFIERS_GATHERED = (
    "autoencoder",
)  # the two-seed run's (CI minutes: a BPDA purifier is gathered by the same code)


def test_gathering_takes_mean_and_sd_of_what_differs(tmp_path):
    a = pd.DataFrame(
        {
            "attack": ["fgsm", "pgd"],
            "epsilon": [0.03, 0.03],
            "robust": [0.6, 0.4],
            "n": [100, 100],
            "trained": [True, True],
        }
    )
    b = a.assign(robust=[0.5, 0.2], trained=[True, False])
    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    a.to_csv(paths[0], index=False)
    b.to_csv(paths[1], index=False)
    table = gather_over_seeds(paths, [0, 1])
    assert list(table["attack"]) == ["fgsm", "pgd"] and list(table["epsilon"]) == [0.03, 0.03]  # labels kept
    assert table["robust"].tolist() == pytest.approx([0.55, 0.3])
    assert table["robust_sd"].tolist() == pytest.approx(
        [np.std([0.6, 0.5], ddof=1), np.std([0.4, 0.2], ddof=1)]
    )
    assert "n_sd" not in table and "epsilon_sd" not in table  # equal over seeds: one column
    assert table["trained"].tolist() == [1.0, 0.5]  # a flag that differs: the share of seeds where it holds
    assert (table["seeds"] == 2).all()
    md = mean_sd_markdown(table, "summary", [0, 1])
    assert "0.550 ± 0.071" in md and "mean ± sd over 2 seeds (0, 1)" in md

    b.iloc[:1].to_csv(paths[1], index=False)
    with pytest.raises(PipelineFileError, match=r"b\.csv: its rows or columns differ from .*a\.csv"):
        gather_over_seeds(paths, [0, 1])
    a.assign(attack=["fgsm", "deepfool"]).to_csv(paths[1], index=False)
    with pytest.raises(PipelineFileError, match=r"b\.csv: column 'attack' differs"):
        gather_over_seeds(paths, [0, 1])


def test_a_detector_that_did_not_train_in_some_seeds_counts_in_none_of_them(tmp_path):
    """Table 5 writes "did not train" where a number would be: the mean and sd are over the seeds that trained, and
    the note says in how many seeds it did not; a cell that did not train anywhere keeps only the note."""
    runs = [
        {"method": ["cnn", "pca"], "fgsm AUROC": ["0.9", "did not train"]},
        {"method": ["cnn", "pca"], "fgsm AUROC": ["did not train", "did not train"]},
        {"method": ["cnn", "pca"], "fgsm AUROC": ["0.7", "did not train"]},
    ]
    paths = [tmp_path / f"{k}.csv" for k in range(3)]
    for path, run in zip(paths, runs):
        pd.DataFrame(run).to_csv(path, index=False)
    table = gather_over_seeds(paths, [0, 1, 2])
    assert table["fgsm AUROC"].iloc[0] == pytest.approx(0.8) and np.isnan(table["fgsm AUROC"].iloc[1])
    assert table["fgsm AUROC_sd"].iloc[0] == pytest.approx(np.std([0.9, 0.7], ddof=1))
    assert table["fgsm AUROC_note"].tolist() == [
        "did not train in 1 of 3 seeds",
        "did not train in 3 of 3 seeds",
    ]
    md = mean_sd_markdown(table, "table5", [0, 1, 2])
    assert (
        "0.800 ± 0.141 (did not train in 1 of 3 seeds)" in md
        and "| pca | did not train in 3 of 3 seeds |" in md
    )

    for other, shown in (("diverged", "'diverged'"), ("", "nan")):  # another word, or an empty cell
        pd.DataFrame({"method": ["cnn", "pca"], "fgsm AUROC": ["0.7", other]}).to_csv(paths[2], index=False)
        with pytest.raises(
            PipelineFileError,
            match=rf"2\.csv: column 'fgsm AUROC' differs .* in row 1 \({shown} "
            r"against 'did not train'\)",
        ):
            gather_over_seeds(paths, [0, 1, 2])


def test_autoattack_summaries_gather_their_sub_attack_counts_and_warnings(tmp_path):
    """The attack summary of AutoAttack runs: the per-sub-attack counts are numbers (mean and sd over seeds); a
    warning some seeds raised is kept with the seeds that raised it (labels still must agree)."""
    runs = [
        {
            "attack": ["aa", "pgd"],
            "fooled_by_apgd-ce": [100, None],
            "fooled_by_square": [0, None],
            "warnings": ["", ""],
        },
        {
            "attack": ["aa", "pgd"],
            "fooled_by_apgd-ce": [96, None],
            "fooled_by_square": [2, None],
            "warnings": ["Square beats the white-box attacks", ""],
        },
        {
            "attack": ["aa", "pgd"],
            "fooled_by_apgd-ce": [98, None],
            "fooled_by_square": [0, None],
            "warnings": ["Square beats the white-box attacks", ""],
        },
    ]
    paths = [tmp_path / f"{k}.csv" for k in range(3)]
    for path, run in zip(paths, runs):
        pd.DataFrame(run).to_csv(path, index=False)
    table = gather_over_seeds(paths, [0, 1, 2])
    assert (
        table["fooled_by_apgd-ce"].iloc[0] == pytest.approx(98) and table["fooled_by_apgd-ce_sd"].iloc[0] == 2
    )
    assert np.isnan(table["fooled_by_square"].iloc[1])  # PGD has no sub-attacks in any seed
    assert table["warnings"].tolist() == ["seeds 1, 2: Square beats the white-box attacks", ""]


def test_defended_tables_gather_with_each_seeds_objective_curve_and_tramer_flag(tmp_path):
    """The defended-accuracy table over seeds (found by the mini detection run of 2026-12-03, which failed here):
    its objective curve differs in every seed and its Tramer flag may, so the gathered cell says what each seed
    said, while the accuracies become mean and sd and the Square column stays a number."""
    from advdefense.tables import DEFENDED_COLUMNS, OBJECTIVE_CURVE, SQUARE_ONLY, TRAMER_FLAG, defended_table

    def run(seed, strongest, curve_first):
        row = {
            "method": "pca",
            "epsilon": 16 / 255,
            "sanity": False,
            "images": 50,
            **{col: 0.5 for col in DEFENDED_COLUMNS if col != "images"},
            "defended_accuracy_strongest": strongest,
            "square_only": seed,
            "attack_success_aware": 1 - strongest,
            "loss_first_step": curve_first,
            "loss_last_step": -0.1,
            "loss_lambda": 10.0,
        }
        return pd.DataFrame([row, {**row, "epsilon": 1.0, "sanity": True}])

    paths = []
    for seed, (strongest, first) in enumerate([(0.8, 11.3), (0.7, 18.5), (0.9, 11.3)]):
        path = tmp_path / f"defended{seed}.csv"
        defended_table(run(seed, strongest, first)).to_csv(path)
        paths.append(path)
    table = gather_over_seeds(paths, [0, 1, 2])
    assert table["defended, strongest of all (%)"].iloc[0] == pytest.approx(80)
    assert table["defended, strongest of all (%)_sd"].iloc[0] == pytest.approx(10)
    assert table[OBJECTIVE_CURVE].iloc[0] == "seeds 0, 2: 11.3 -> -0.1 (10); seed 1: 18.5 -> -0.1 (10)"
    assert table[TRAMER_FLAG].iloc[0] == "seeds 0, 2: yes; seed 1: no"
    assert table[SQUARE_ONLY].iloc[0] == pytest.approx(1)


@pytest.mark.parametrize(
    "seeds,message",
    [
        ([], r"seeds: an empty list runs nothing"),
        ([0, 3, 3], r"seeds: 3 listed more than once"),
        ([-1], r"seeds\.0: -1 is less than the minimum of 0"),
    ],
)
def test_bad_seed_lists_are_refused(seeds, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"seeds": seeds})


def _two_seed_config(tmp_path):
    """The smoke config cut to what the gathering needs (two attacks, Table 3, no latents or detectors)."""
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["seeds"] = [0, 1]
    cfg["dataset"]["synthetic"].update({"train_images": 1500, "test_images": 300})
    cfg["dataset"]["calibration_size"] = 0  # no detectors
    cfg["classifier"]["epochs"] = 2
    cfg["autoencoder"]["epochs"] = 2
    # FGSM on the test split only (attacks.<name>.splits), PGD on both
    cfg["attacks"] = {
        "fgsm": {**cfg["attacks"]["fgsm"], "splits": ["test"]},
        "pgd": {**cfg["attacks"]["pgd"], "params": {"steps": 10}},
    }
    cfg["attack_defaults"]["images"] = {"train": 100, "test": 100}
    cfg["latents"]["enabled"] = False
    cfg["detection"]["enabled"] = False
    cfg["purification"]["adaptive"].update({"enabled": True, "images": 50, "restarts": None})
    cfg["purification"]["methods"] = list(PURIFIERS_GATHERED)  # one of the registry, gathered on its own
    cfg["tables"] = {"table3": {"attacks": ["fgsm", "pgd"]}}
    cfg["corruptions"]["names"] = None  # gathered like every table (test_corruptions: they are seed tables)
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_two_seeds_run_the_pipeline_twice_and_gather_the_tables(tmp_path):
    configfile = _two_seed_config(tmp_path)
    dry = run_snakemake(tmp_path, configfile, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout + dry.stderr)
    assert (
        counts["dataset"] == 2 and counts["train_classifier"] == 2 and counts["attack"] == 6
    )  # no FGSM on train
    assert counts["adaptive_attack"] == 4 * len(PURIFIERS_GATHERED)
    assert counts["seed_table"] == 2 and counts["seed_figure_accuracy"] == 1  # summary and Table 3
    # a file of a split that the attack does not run on: refused, naming the key
    refused = run_snakemake(
        tmp_path, configfile, "-n", targets=(f"results/attacks/{D}-seed0/fgsm/eps0.03/train.h5",)
    )
    assert (
        refused.returncode != 0
        and "attacks.fgsm.splits: the attack does not run on the train split"
        in refused.stdout + refused.stderr
    )
    proc = run_snakemake(tmp_path, configfile)
    assert proc.returncode == 0, proc.stderr[-4000:]

    runs = [f"{D}-seed0", f"{D}-seed1"]
    accuracy = [
        yaml.safe_load((tmp_path / f"results/classifier/{r}/metrics.json").read_text())["test_accuracy"]
        for r in runs
    ]
    summaries = [pd.read_csv(tmp_path / f"results/attacks/{r}/summary.csv") for r in runs]
    assert not summaries[0]["robust_accuracy"].equals(summaries[1]["robust_accuracy"])  # two real runs
    gathered = pd.read_csv(tmp_path / f"results/seeds/{D}/tables/summary.csv")
    assert list(gathered["attack"]) == list(summaries[0]["attack"]) and (gathered["seeds"] == 2).all()
    both = np.stack([s["robust_accuracy"] for s in summaries])
    assert gathered["robust_accuracy"].to_numpy() == pytest.approx(both.mean(0))
    assert gathered["robust_accuracy_sd"].to_numpy() == pytest.approx(both.std(0, ddof=1))
    assert all(0.5 < a <= 1 for a in accuracy)  # each seed's classifier learned (chance is 0.1)
    table3 = pd.read_csv(tmp_path / f"results/seeds/{D}/tables/table3_purification.csv")
    assert (
        "fgsm (eps=0.03)_sd" in table3.columns
        and "± " in (tmp_path / f"results/seeds/{D}/tables/table3_purification.md").read_text()
    )
    png = (tmp_path / f"results/seeds/{D}/figures/accuracy_vs_epsilon.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # the figure's points: the bare classifier from the summaries, each purifier against the oblivious and the
    # adaptive attack from each run's purified and adaptive files, mean and sd over the two runs
    from advdefense.attack_files import read_attack_file
    from advdefense.purified_files import read_purified

    points = pd.read_csv(tmp_path / f"results/seeds/{D}/figures/accuracy_vs_epsilon.csv")
    for attack in ("fgsm", "pgd"):
        rows = points[points["attack"] == attack].set_index(["defence", "epsilon"])
        test = [s[(s["attack"] == attack) & (s["split"] == "test")].iloc[0] for s in summaries]
        expected = {
            ("none", 0.0): [t["clean_accuracy"] for t in test],
            ("none", 0.03): [t["robust_accuracy"] for t in test],
        }
        for purifier in PURIFIERS_GATHERED:
            purified = [
                read_purified(tmp_path / f"results/purified/{r}/{purifier}/{attack}/eps0.03/test.h5")
                for r in runs
            ]
            adaptive = [
                read_attack_file(
                    tmp_path / f"results/adaptive/{r}/{purifier}/{attack}/eps0.03/test.h5",
                    require=("label", "pred_adv"),
                )
                for r in runs
            ]
            title = PURIFIERS[purifier].title
            expected[(title, 0.03)] = [(p.pred_purified == p.label).mean() for p in purified]
            expected[(f"{title}, adaptive attack", 0.03)] = [(a.pred_adv == a.label).mean() for a in adaptive]
        assert sorted(rows.index) == sorted(expected), attack
        for key, values in expected.items():
            assert rows.loc[key, "mean"] == pytest.approx(np.mean(values)), (attack, key)
            assert rows.loc[key, "sd"] == pytest.approx(np.std(values, ddof=1)), (attack, key)
            assert rows.loc[key, "runs"] == 2
    # within a seed every attack takes the same images
    import h5py

    for run in runs:
        with (
            h5py.File(tmp_path / f"results/attacks/{run}/fgsm/eps0.03/test.h5") as a,
            h5py.File(tmp_path / f"results/attacks/{run}/pgd/eps0.03/test.h5") as b,
        ):
            assert np.array_equal(a["index"][()], b["index"][()]), run


def test_mini_overlay_runs_three_seeds_of_the_attack_sweep(mini_cifar, tmp_path):
    """config/mini-attacks-over-seeds.yaml on top of the mini config: three runs, FGSM, PGD and AutoAttack at six
    epsilons each, the autoencoder and the detectors on FGSM and PGD, every table and figure gathered (dry run)."""
    cfg = yaml.safe_load((REPO / "config/cifar10-mini.yaml").read_text())
    cfg["dataset"]["path"] = str(mini_cifar)
    base = tmp_path / "mini.yaml"
    base.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(
        tmp_path, base, "-n", "--configfile", str(base), str(REPO / "config/mini-attacks-over-seeds.yaml")
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    # per seed: FGSM and PGD at 6 epsilons on train and test, AutoAttack at 6 and the mini config's DeepFool and
    # three 8-bit attacks at 0.02 on test only
    assert (
        counts["attack"] == 3 * (2 * 6 * 2 + 6 + 4)
        and counts["train_classifier"] == 3
        and counts["dataset"] == 3
    )
    assert (
        counts["latents_attack"] == 3 * 2 * 6 * 2
    )  # only the attacks the detectors learn (detection.attacks)
    assert (
        counts["detect"] == 3 * len(DETECTORS)
        and counts["adaptive_attack"] == 3 * 2 * 6 * len(PURIFIERS)
        and counts["purify_attack"] == 3 * 22 * len(PURIFIERS)
    )
    assert counts["train_flow"] == counts["train_autoencoder"] == 3
    assert (
        counts["robustbench_info"] == 3 * 6
    )  # each seed's classifier: AutoAttack at 6 epsilons, one entry each
    # summary, Tables 3, 4, 5, generalisation and defended; both figures
    assert counts["seed_table"] == 6 and counts["seed_figure_accuracy"] == counts["seed_figure_auroc"] == 1
    assert "mmd_test" not in counts


def test_mini_detection_overlay_runs_every_detector_over_three_seeds(mini_cifar, tmp_path):
    """config/mini-detection-over-seeds.yaml on top of the mini config (issue 24): three runs (the run names of
    the attack sweep's overlay, so the two share classifiers), every registered detector trained on the paper's
    three attacks, the detector-aware attack with the Square check at 0.02 only, the autoencoder the only
    purifier, no adaptive attack, no MMD (dry run)."""
    from advdefense.config import check_config_files
    from advdefense.plan.names import runs

    cfg = yaml.safe_load((REPO / "config/cifar10-mini.yaml").read_text())
    cfg["dataset"]["path"] = str(mini_cifar)
    base = tmp_path / "mini.yaml"
    base.write_text(yaml.safe_dump(cfg))
    overlay = REPO / "config/mini-detection-over-seeds.yaml"
    merged = check_config_files([base, overlay])  # merged key by key, as Snakemake does
    sweep = check_config_files([base, REPO / "config/mini-attacks-over-seeds.yaml"])
    assert set(runs(merged)) == set(runs(sweep)) == {f"cifar10-mini-seed{s}" for s in range(3)}
    assert merged["detection"]["aware"]["square_queries"] > 0
    proc = run_snakemake(tmp_path, base, "-n", "--configfile", str(base), str(overlay))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["attack"] == 3 * 2 * 6  # the mini config's six attacks, train and test
    assert counts["latents_attack"] == 3 * 3 * 2  # fgsm, pgd, deepfool (detection.attacks)
    assert counts["detect"] == 3 * len(DETECTORS)
    assert counts["purify_attack"] == 3 * 6 and "adaptive_attack" not in counts
    assert counts["train_flow"] == counts["train_autoencoder"] == counts["train_classifier"] == 3
    assert counts["seed_table"] == 6 and "mmd_test" not in counts


def _evaluation_csv(path, rows):
    """An evaluation.csv with the columns auroc_by_epsilon reads: (method, attack, eps, trained, auroc) rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        [
            {
                "method": m,
                "train": f"{a}_eps{e}",
                "trained": t,
                "test": f"{a}_eps{e}",
                "test_attack": a,
                "test_epsilon": e,
                "set": "honest",
                "auroc": auroc,
            }
            for m, a, e, t, auroc in rows
        ]
    ).to_csv(path, index=False)


def test_auroc_figure_leaves_out_runs_where_the_detector_did_not_train(tmp_path):
    from advdefense.figures import auroc_vs_epsilon

    # three seeds; the CNN trains only in seed 0 at 0.01 and in no seed at 0.02; the MLP always trains
    aurocs = {0: (0.9, 0.7), 1: (0.8, 0.5), 2: (0.7, 0.55)}
    files = []
    for seed, (mlp, cnn) in aurocs.items():
        path = tmp_path / f"results/detection/run-seed{seed}/all/evaluation.csv"
        _evaluation_csv(
            path,
            [
                ("mlp", "pgd", 0.01, True, mlp),
                ("mlp", "pgd", 0.02, True, mlp + 0.05),
                ("cnn", "pgd", 0.01, seed == 0, cnn),
                ("cnn", "pgd", 0.02, False, 0.5),
            ],
        )
        files.append(path)
    points = auroc_vs_epsilon(files, tmp_path / "auroc.png", points_csv=tmp_path / "auroc.csv")
    written = pd.read_csv(tmp_path / "auroc.csv")
    assert len(written) == len(points) == 3  # the CNN at 0.02 trained in no seed: no point
    cnn = written[written["method"] == "cnn"].iloc[0]
    assert cnn["epsilon"] == 0.01 and cnn["auroc"] == pytest.approx(0.7) and cnn["runs"] == 1
    assert cnn["untrained_runs"] == 2 and cnn["auroc_sd"] == 0.0
    mlp = written[(written["method"] == "mlp") & (written["epsilon"] == 0.01)].iloc[0]
    assert mlp["auroc"] == pytest.approx(0.8) and mlp["auroc_sd"] == pytest.approx(0.1)
    assert mlp["runs"] == 3 and mlp["untrained_runs"] == 0
    assert (tmp_path / "auroc.png").stat().st_size > 0


def test_auroc_figure_names_a_file_with_a_bad_trained_cell(tmp_path):
    from advdefense.errors import PipelineFileError
    from advdefense.figures import auroc_vs_epsilon

    path = tmp_path / "results/detection/run-seed0/all/evaluation.csv"
    _evaluation_csv(path, [("mlp", "pgd", 0.01, "maybe", 0.9)])
    with pytest.raises(PipelineFileError, match=r"evaluation\.csv: column 'trained' holds 'maybe'"):
        auroc_vs_epsilon([path], tmp_path / "auroc.png")
