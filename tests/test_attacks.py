import copy
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch

from advdefense.attack_files import (
    AttackFileError,
    merge_attack_shards,
    read_attack_file,
    summarize_attack_files,
)
from advdefense.attacks import generate_attack_file, run_attack
from advdefense.classifier import classifier_arch, load_classifier
from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.data import attack_indices, read_dataset_h5
from advdefense.inference import predict
from advdefense.models import CheckpointError
from advdefense.models.checkpoint import load_checkpoint
from advdefense.plan.jobs import AttackJob, attack_job
from conftest import REPO

SMOKE = "synthetic-smoke"


@pytest.fixture(scope="module")
def smoke(smoke_run):
    cfg = validate_config(load_yaml(REPO / "config" / "smoke.yaml"))
    return {
        "dir": smoke_run,
        "cfg": cfg,
        "data": smoke_run / f"results/data/{SMOKE}.h5",
        "model": smoke_run / f"results/classifier/{SMOKE}/model.pt",
        "attacks": smoke_run / f"results/attacks/{SMOKE}",
    }


def _files(smoke):
    return sorted(smoke["attacks"].glob("*/eps*/*.h5"))


def test_attack_files_match_the_config(smoke):
    names = {(p.parts[-3], p.parts[-2], p.stem) for p in _files(smoke)}
    expected = {(a, "eps0.03", s) for a in ("fgsm", "pgd", "deepfool", "pgd_8bit") for s in ("train", "test")}
    assert names == expected
    for path in _files(smoke):
        f = read_attack_file(path)
        assert f.adv.dtype == np.float32 and f.adv.shape == (500, 3, 32, 32)
        attrs = f.attrs
        assert attrs["attack"] == path.parts[-3] and attrs["epsilon"] == pytest.approx(0.03)
        assert attrs["norm"] == "linf" and len(attrs["classifier_sha256"]) == 64
        assert "foolbox" in attrs["versions"] and attrs["split"] == path.stem


def test_stored_predictions_equal_a_fresh_forward_pass(smoke):
    """Stored predictions are exactly what `predict` (the evaluation copy every stage uses) gives at the
    attack's batch size, even where they were read from the attack's own forward passes; the raw
    checkpoint model (batch norm unfolded) agrees except on near-ties of its top two logits."""
    model = load_classifier(smoke["model"])
    ds = read_dataset_h5(smoke["data"])
    bs = smoke["cfg"]["attack_defaults"]["batch_size"]
    for path in _files(smoke):
        f = read_attack_file(path)
        split = ds.split(path.stem)
        adv, clean = torch.from_numpy(f.adv), torch.from_numpy(split.images[f.index])
        assert np.array_equal(predict(model, adv, bs).numpy(), f.pred_adv), path
        assert np.array_equal(predict(model, clean, bs).numpy(), f.pred_clean), path
        with torch.inference_mode():
            raw = model(adv)
        top2 = raw.topk(2, dim=1).values
        near_tie = (top2[:, 0] - top2[:, 1]).numpy() < 1e-4
        assert np.array_equal(raw.argmax(1).numpy()[~near_tie], f.pred_adv[~near_tie]), path
        assert np.array_equal(f.label, split.labels[f.index])
        assert np.array_equal(f.success, f.pred_adv != f.label)


def test_linf_attacks_stay_within_epsilon(smoke):
    ds = read_dataset_h5(smoke["data"])
    for path in _files(smoke):
        f = read_attack_file(path)
        clean = ds.split(path.stem).images[f.index].astype(np.float32) / 255
        delta = np.abs(f.adv - clean).reshape(len(clean), -1).max(1)
        assert delta.max() <= 0.03 + 1e-6, path
        assert np.allclose(delta, f.linf, atol=1e-6)
        assert f.adv.min() >= 0.0 and f.adv.max() <= 1.0


def test_pgd_succeeds_at_least_as_often_as_fgsm_and_attacks_work(smoke):
    table = summarize_attack_files(_files(smoke)).set_index(["attack", "split"])
    for split in ("train", "test"):
        assert table.loc[("pgd", split), "success_rate"] >= table.loc[("fgsm", split), "success_rate"]
        assert table.loc[("pgd", split), "success_rate"] > 1.5 * (
            1 - table.loc[("pgd", split), "clean_accuracy"]
        )


def test_summary_csv_has_one_row_per_file(smoke):
    import pandas as pd

    table = pd.read_csv(smoke["attacks"] / "summary.csv")
    assert len(table) == 8 and set(table["quantize"]) == {"float", "8bit"}
    assert {
        "n",
        "clean_accuracy",
        "robust_accuracy",
        "success_rate",
        "success_rate_on_correct",
        "mean_linf",
        "max_l2",
        "seconds",
        "images_per_s",
    } <= set(table.columns)
    assert (table["n"] == 500).all() and (table["max_linf"] <= 0.03 + 1e-6).all()
    assert (table["robust_accuracy"] <= table["clean_accuracy"] + 1e-9).all()


def test_fixed_seed_gives_identical_files(smoke, tmp_path):
    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attack_defaults"]["images"]["test"] = 40
    outs = []
    for i in range(2):
        out = tmp_path / f"pgd{i}.h5"
        generate_attack_file(
            smoke["data"],
            smoke["model"],
            attack_job(cfg, "pgd", 0.03, "test", cfg["seed"]),
            out,
            device="cpu",
        )
        outs.append(read_attack_file(out))
    for key in ("adv", "index", "pred_adv", "success", "linf", "l2"):
        assert np.array_equal(getattr(outs[0], key), getattr(outs[1], key)), key
    assert outs[0].attrs["seed"] == outs[1].attrs["seed"]


L2_AND_MORE = {
    "pgd_l2": {"class": "L2PGD", "norm": "l2", "params": {"steps": 10}, "epsilons": [0.5]},
    "deepfool_l2": {"class": "L2DeepFoolAttack", "norm": "l2", "params": {"steps": 10}, "epsilons": [0.5]},
    "cw_l2": {
        "class": "L2CarliniWagnerAttack",
        "norm": "l2",
        "params": {"steps": 20, "binary_search_steps": 2, "stepsize": 0.05},
        "epsilons": [0.5],
    },
    "bim": {"class": "LinfBasicIterativeAttack", "norm": "linf", "params": {"steps": 5}, "epsilons": [0.03]},
}


@pytest.mark.parametrize("name", sorted(L2_AND_MORE))
def test_other_attacks_work_from_config_alone(smoke, tmp_path, name):
    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attacks"] = {name: L2_AND_MORE[name]}
    cfg["tables"]["table3"]["attacks"] = None  # (the smoke config's columns are attacks left out here)
    cfg["attack_defaults"]["images"]["test"] = 30
    cfg["purification"]["adaptive"]["images"] = None
    cfg["purification"]["adaptive"]["params"] = {}
    cfg["detection"]["aware"]["images"] = None
    cfg = validate_config(cfg)
    eps = L2_AND_MORE[name]["epsilons"][0]
    out = tmp_path / f"{name}.h5"
    summary = generate_attack_file(
        smoke["data"], smoke["model"], attack_job(cfg, name, eps, "test", cfg["seed"]), out, device="cpu"
    )
    f = read_attack_file(out)
    ds = read_dataset_h5(smoke["data"])
    clean = ds.test.images[f.index].astype(np.float32) / 255
    delta = (f.adv - clean).reshape(len(clean), -1)
    if L2_AND_MORE[name]["norm"] == "l2":
        assert np.linalg.norm(delta, axis=1).max() <= eps * (1 + 1e-5)
    else:
        assert np.abs(delta).max() <= eps + 1e-6
    assert summary["success_rate"] > 0  # every one of them fools some images at this budget
    assert f.success.sum() == (f.pred_adv != f.label).sum()


def test_attack_bad_inputs_name_the_cause(smoke, tmp_path):
    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attack_defaults"]["images"]["test"] = 501
    with pytest.raises(
        ConfigError, match=r"attack_defaults\.images\.test: asked for 501 images but the split has only 500"
    ):
        generate_attack_file(
            smoke["data"],
            smoke["model"],
            attack_job(cfg, "pgd", 0.03, "test", cfg["seed"]),
            tmp_path / "x.h5",
            device="cpu",
        )
    job = attack_job(smoke["cfg"], "pgd", 0.03, "test", smoke["cfg"]["seed"])
    job.spec["params"]["steps"] = -5
    with pytest.raises(ConfigError, match=r"attacks\.pgd\.params\.steps: must be a positive integer"):
        generate_attack_file(smoke["data"], smoke["model"], job, tmp_path / "x.h5", device="cpu")
    deeper = classifier_arch({**smoke["cfg"]["classifier"], "depth": 20})
    deeper.pop("num_classes")
    with pytest.raises(
        CheckpointError, match=r"model\.pt: architecture does not match the configuration \(depth: file has 8"
    ):
        load_checkpoint(smoke["model"], "classifier", deeper)
    assert not list(tmp_path.iterdir()), "a failed attack left a file behind"


def test_reading_bad_attack_files(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["adv"] = np.full((2, 3, 32, 32), 1.5, np.float32)
    with pytest.raises(AttackFileError, match=r"a\.h5: not an attack file of this pipeline \(format None\)"):
        read_attack_file(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "advdefense-attack-v1"
    with pytest.raises(AttackFileError, match=r"a\.h5: missing dataset\(s\) index, label"):
        read_attack_file(path)
    with pytest.raises(
        AttackFileError, match=r"a\.h5: adversarial image 0 \(of 'adv'\) holds values outside \[0, 1\]"
    ):
        read_attack_file(path, require=("adv",))
    with pytest.raises(AttackFileError, match="does not exist"):
        read_attack_file(tmp_path / "none.h5")
    with pytest.raises(AttackFileError, match=r"a\.h5: missing dataset\(s\) label, pred_clean, pred_adv"):
        summarize_attack_files([path])


def test_attack_indices_are_shared_and_bounded():
    a = attack_indices(1000, 100, seed=0, key="k")
    assert np.array_equal(a, attack_indices(1000, 100, seed=0, key="k"))
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert np.array_equal(attack_indices(50, None, 0, "k"), np.arange(50))


def test_interrupted_attack_leaves_no_file(smoke, tmp_path):
    """An exception mid-way (here: a model that breaks on the second batch) leaves nothing behind."""
    model = load_classifier(smoke["model"])
    calls = {"n": 0}

    class Breaking(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            calls["n"] += 1
            if calls["n"] > 3:
                raise RuntimeError("device lost")
            return self.inner(x)

    ds = read_dataset_h5(smoke["data"])
    spec = {"class": "FGSM", "norm": "linf", "epsilons": [0.03]}
    with pytest.raises(RuntimeError, match="device lost"):
        run_attack(
            Breaking(),
            ds.test.images[:20],
            ds.test.labels[:20],
            np.arange(20),
            AttackJob(name="fgsm", spec=spec, eps=0.03, seed=0, batch_size=10),
            tmp_path / "out.h5",
            device=torch.device("cpu"),
            attrs={},
        )
    assert not list(tmp_path.iterdir())


SHARDED = {
    "pgd": None,  # Foolbox, random start: every batch draws from its own seed
    "autoattack": {
        "class": "AutoAttack",
        "norm": "linf",
        "params": {"version": "custom", "attacks": ["apgd-ce", "apgd-dlr"]},
        "epsilons": [0.03],
    },
}


@pytest.mark.parametrize("name", sorted(SHARDED))
def test_sharded_job_merges_into_the_unsharded_file_bit_for_bit(smoke, tmp_path, name):
    cfg = copy.deepcopy(smoke["cfg"])
    if SHARDED[name]:
        cfg["attacks"][name] = SHARDED[name]
    cfg["attack_defaults"]["images"]["test"] = 50
    cfg["detection"]["aware"]["images"] = cfg["purification"]["adaptive"]["images"] = None
    cfg = validate_config(cfg)
    job = replace(
        attack_job(cfg, name, 0.03, "test", cfg["seed"]), batch_size=8
    )  # 7 batches, the last one short
    whole = tmp_path / "whole.h5"
    generate_attack_file(smoke["data"], smoke["model"], job, whole, device="cpu")
    shards = [tmp_path / f"shard{k}.h5" for k in range(3)]
    for k, path in enumerate(shards):
        generate_attack_file(smoke["data"], smoke["model"], replace(job, shard=(k, 3)), path, device="cpu")
    sizes = [len(read_attack_file(p).index) for p in shards]
    assert sizes == [16, 16, 18]  # whole batches: 2 + 2 + 3 of them
    merged = tmp_path / "merged.h5"
    merge_attack_shards(shards, merged)
    with h5py.File(whole, "r") as a, h5py.File(merged, "r") as b:
        assert sorted(a) == sorted(b)
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key][()], b[key][()]), key
        timing = {"seconds", "images_per_s", "merged_shards"}
        assert {k: v for k, v in a.attrs.items() if k not in timing} == {
            k: v for k, v in b.attrs.items() if k not in timing
        }
        assert b.attrs["merged_shards"] == 3
        assert a["success"][()].any()
        if name == "autoattack":  # which sub-attack fooled each image, and -1 where none did
            sub = a["sub_attack"][()]
            assert np.array_equal(sub >= 0, a["success"][()] & (a["pred_clean"][()] == a["label"][()]))
    summary = summarize_attack_files([merged])
    assert summary.loc[0, "n"] == 50
    if name == "autoattack":
        counts = summary.filter(like="fooled_by_").iloc[0]
        assert list(counts.index) == ["fooled_by_apgd-ce", "fooled_by_apgd-dlr"]  # the sub-attacks it ran
        with h5py.File(merged, "r") as f:  # the first success of each image, per sub-attack
            assert counts.sum() == (f["sub_attack"][()] >= 0).sum() and counts["fooled_by_apgd-ce"] > 0

    # shards that do not fit together are refused, naming the file
    with pytest.raises(AttackFileError, match=r"shard1\.h5: holds shard 1 of 3, expected shard 0 of 2"):
        merge_attack_shards(shards[1:], tmp_path / "bad.h5")
    with pytest.raises(AttackFileError, match=r"the shards hold 32 images, the job has 50"):
        _merge_with_shard_count(shards[:2], tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"attack_defaults.shards: 8 shards, but split 'test' .* has 50 image\(s\), "
        r"7 batch\(es\) of attack_defaults.batch_size 8",
    ):
        generate_attack_file(
            smoke["data"], smoke["model"], replace(job, shard=(0, 8)), tmp_path / "x.h5", device="cpu"
        )
    assert not (tmp_path / "bad.h5").exists() and not (tmp_path / "x.h5").exists()


def test_autoattack_result_as_a_robustbench_model_info_entry(smoke, tmp_path):
    """A trained classifier's AutoAttack file of the test split as the leaderboard's entry: the numbers are the
    file's (clean and robust accuracy on the same images, in percent), eps as the leaderboard writes it, the
    architecture and training data of a model trained here; a file of another attack is refused."""
    import json

    from advdefense.plan.decisions import classifier_architecture
    from advdefense.robustbench_info import MODEL_INFO_FIELDS, eps_text, write_model_info

    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attacks"]["autoattack"] = SHARDED["autoattack"] | {"epsilons": [8 / 255]}
    cfg["attack_defaults"]["images"]["test"] = 40
    cfg["detection"]["aware"]["images"] = cfg["purification"]["adaptive"]["images"] = None
    cfg = validate_config(cfg)
    attack = tmp_path / "autoattack.h5"
    generate_attack_file(
        smoke["data"],
        smoke["model"],
        attack_job(cfg, "autoattack", 8 / 255, "test", cfg["seed"]),
        attack,
        device="cpu",
    )
    metrics = smoke["dir"] / f"results/classifier/{SMOKE}/metrics.json"
    entry = write_model_info(
        attack, metrics, tmp_path / "info.json", SMOKE, "cifar10", classifier_architecture(cfg)
    )
    assert list(json.loads((tmp_path / "info.json").read_text())) == [*MODEL_INFO_FIELDS, "advdefense"]
    summary = summarize_attack_files([attack]).iloc[0]
    assert entry["eps"] == "8/255" and entry["architecture"] == "ResNet-8"
    assert entry["name"] == f"advdefense {SMOKE}: ResNet-8" and entry["additional_data"] is False
    assert entry["clean_acc"] == f"{100 * summary['clean_accuracy']:.2f}" and float(entry["clean_acc"]) > 80
    # an undefended ResNet at 8/255: AutoAttack breaks most of it
    assert entry["autoattack_acc"] == f"{100 * summary['robust_accuracy']:.2f}"
    assert float(entry["autoattack_acc"]) < float(entry["clean_acc"]) / 2
    assert (
        entry["advdefense"]["n_test_images"] == 40 and entry["advdefense"]["autoattack_version"] == "custom"
    )
    assert [eps_text(e) for e in (0.5, 0.02, 4 / 255, 1.0)] == ["0.5", "0.02", "4/255", "255/255"]
    with pytest.raises(ValueError, match="not an AutoAttack file of the test split"):
        write_model_info(
            smoke["attacks"] / "pgd/eps0.03/test.h5", metrics, tmp_path / "x.json", SMOKE, "cifar10"
        )


def _merge_with_shard_count(paths, tmp_path):
    """Two of three shards, relabelled as a complete pair: the image count gives them away."""
    fixed = []
    for k, p in enumerate(paths):
        q = tmp_path / f"relabelled{k}.h5"
        q.write_bytes(p.read_bytes())
        with h5py.File(q, "r+") as f:
            f.attrs["shards"] = 2
        fixed.append(q)
    merge_attack_shards(fixed, tmp_path / "bad.h5")


def test_attack_restarts_only_ever_add_successes(smoke, tmp_path):
    """`restarts`: per image the first run that fooled the classifier; images fooled by the single run stay fooled
    with the same adversarial, more images are fooled in all."""
    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attack_defaults"]["images"]["test"] = 200
    cfg["detection"]["aware"]["images"] = cfg["purification"]["adaptive"]["images"] = None
    # a weak PGD (2 steps of half the ball) whose random start decides some images: on the smoke classifier
    # about 46 of 200 fooled by one run and 5 more by 3 restarts (10 steps of 0.1: 61 and 1 more)
    cfg["attacks"]["pgd"]["params"] = {"steps": 2, "rel_stepsize": 0.5}
    once = attack_job(validate_config(cfg), "pgd", 0.03, "test", cfg["seed"])
    cfg["attacks"]["pgd"]["restarts"] = 4
    four = attack_job(validate_config(cfg), "pgd", 0.03, "test", cfg["seed"])
    generate_attack_file(smoke["data"], smoke["model"], once, tmp_path / "a.h5", device="cpu")
    generate_attack_file(smoke["data"], smoke["model"], four, tmp_path / "b.h5", device="cpu")
    a, b = read_attack_file(tmp_path / "a.h5"), read_attack_file(tmp_path / "b.h5")
    assert b.attrs["restarts"] == 4
    assert (b.success >= a.success).all() and b.success.sum() > a.success.sum()
    assert np.array_equal(b.adv[a.success], a.adv[a.success])
    with h5py.File(tmp_path / "b.h5", "r") as f:  # the run kept per image: a restart exactly where one fooled
        assert np.array_equal(f["restart"][:] > 0, b.success & ~a.success)
    assert np.abs(b.adv - read_dataset_h5(smoke["data"]).test.images[b.index] / 255.0).max() <= 0.03 + 1e-6


def test_attack_sanity_checks(smoke, tmp_path):
    """What any working attack shows (Carlini et al. 2019): a large enough epsilon fools (almost) every image; more
    PGD steps never leave robust accuracy higher beyond noise; FGSM never beats PGD at one epsilon."""
    cfg = copy.deepcopy(smoke["cfg"])
    cfg["attack_defaults"]["images"]["test"] = 100
    cfg["detection"]["aware"]["images"] = None
    cfg["attacks"]["pgd"]["epsilons"] = [0.03, 0.3]
    cfg = validate_config(cfg)

    def robust(name, eps, **params):
        job = attack_job(cfg, name, eps, "test", cfg["seed"])
        job.spec["params"].update(params)
        out = tmp_path / f"{name}-{eps}-{sorted(params.items())}.h5"
        return generate_attack_file(smoke["data"], smoke["model"], job, out, device="cpu")["robust_accuracy"]

    assert robust("pgd", 0.3) <= 0.01
    few, many = robust("pgd", 0.03, steps=5), robust("pgd", 0.03, steps=40)
    assert many <= few + 0.02, (few, many)
    assert robust("pgd", 0.03) <= robust("fgsm", 0.03) + 0.02


class _Counting(torch.nn.Module):
    """A tiny linear classifier on 3x4x4 images that counts its forward passes."""

    def __init__(self, draws_at_random=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
        self.passes = 0
        if draws_at_random:
            self.draws_at_random = True

    def forward(self, x):
        self.passes += 1
        return self.net(x)


@pytest.mark.parametrize(
    "cls, params, model_random, reruns",
    [
        ("LinfDeepFoolAttack", {"steps": 5}, False, False),
        ("FGSM", {}, False, False),
        ("LinfPGD", {"steps": 3}, False, True),  # its random start
        ("LinfBasicIterativeAttack", {"steps": 3}, False, False),
        ("LinfDeepFoolAttack", {"steps": 5}, True, True),  # a random model (a random purifier under EOT)
    ],
)
def test_restarts_rerun_only_what_draws_at_random(cls, params, model_random, reruns):
    """`Restarts` runs an attack again only where another seed can change its answer: DeepFool, FGSM and BIM
    (no random start) on a deterministic model would repeat themselves, so they run once and keep run 0 for every
    image, with the single run's adversarials bit for bit; PGD (random start) or any attack on a model that
    declares `draws_at_random` runs again on the images left."""
    from advdefense.attack_methods import build_method
    from advdefense.inference import LogitRecorder

    x = torch.rand(40, 3, 4, 4)
    model = _Counting(model_random).eval()
    y = model(x).argmax(1)  # every image classified "correctly": a small eps leaves most standing
    results = {}
    for restarts in (1, 3):
        model.passes = 0
        spec = {"class": cls, "norm": "linf", "params": params, "restarts": restarts}
        method = build_method(spec, LogitRecorder(model).eval(), 0.001, "cpu")
        assert method.draws_at_random == reruns
        adv, _ = method(x, y, seed=5)
        results[restarts] = (adv, model.passes, method.runs)
    (once, passes_once, _), (thrice, passes_thrice, runs) = results[1], results[3]
    assert runs is not None and runs.shape == (40,)
    if reruns:
        assert passes_thrice > passes_once  # the images left were attacked again
    else:
        assert passes_thrice == passes_once and not runs.any()
        assert torch.equal(once, thrice)
    assert (once - x).abs().max() <= 0.001 + 1e-6 and (thrice - x).abs().max() <= 0.001 + 1e-6
