import json

import numpy as np
import pandas as pd
import pytest
import torch

from advdefense.config import ConfigError
from advdefense.flow import import_published_flow, load_flow, load_published_glow
from advdefense.latent_files import read_latents
from advdefense.models import CheckpointError
from advdefense.models.glow import Glow, squeeze2d, unsqueeze2d
from conftest import REPO

REFERENCE = REPO.parent / "shared/reference/glow"


@pytest.fixture(scope="module")
def reference():
    if not (REFERENCE / "glow_reference_small.npz").is_file():
        pytest.skip(f"Glow reference vectors not found in {REFERENCE}")
    data = np.load(REFERENCE / "glow_reference_small.npz")
    hparams = json.loads((REFERENCE / "glow_reference_small.json").read_text())
    state = {k[len("state/") :]: torch.from_numpy(data[k]) for k in data.files if k.startswith("state/")}
    return {"x": data["x"], "z": data["z"], "bpd": data["bpd"], "hparams": hparams, "state": state}


def _published_files(tmp_path, state, hparams):
    ckpt, hp = tmp_path / "glow_affine_coupling.pt", tmp_path / "hparams.json"
    torch.save(state, ckpt)
    hp.write_text(json.dumps(hparams))
    return ckpt, hp


def test_published_format_reproduces_reference_vectors(reference, tmp_path):
    ckpt, hp = _published_files(tmp_path, reference["state"], reference["hparams"])
    model = load_published_glow(ckpt, hp)
    assert model.top_shape == (48, 4, 4)
    with torch.no_grad():
        z, bpd = model(torch.from_numpy(reference["x"]))
    assert np.abs(z.numpy() - reference["z"]).max() < 1e-4
    assert np.abs(bpd.numpy() - reference["bpd"]).max() < 1e-4


def test_preprocess_maps_pixels_onto_the_published_convention(reference):
    model = Glow(hidden_channels=4, K=1, L=3)
    q = torch.arange(256, dtype=torch.float32)
    assert torch.allclose(model.preprocess(q / 255), q / 256 - 0.5, atol=1e-6)


def test_the_real_checkpoints_key_list_matches_our_module():
    keys = {}
    for line in (REFERENCE / "pretrained_cifar10_keys.tsv").read_text().splitlines():
        if line.startswith(("#", "key\t")):
            continue
        name, shape = line.split("\t")
        keys[name] = tuple(int(s) for s in shape.split("x"))
    model = Glow(hidden_channels=512, K=32, L=3)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == keys
    assert sum(np.prod(s) for s in keys.values()) == pytest.approx(44.3e6, rel=0.01)


@pytest.mark.parametrize(
    "permutation,coupling", [("invconv", "affine"), ("shuffle", "additive"), ("reverse", "affine")]
)
def test_reverse_of_forward_is_identity(permutation, coupling):
    torch.manual_seed(0)
    model = Glow(hidden_channels=16, K=2, L=3, flow_permutation=permutation, flow_coupling=coupling).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # leave the zero initialisation so every layer acts
    model.mark_initialized()
    model.eval()
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64) - 0.5
    with torch.no_grad():
        out = model.transform(x)
        back = model.decode(out.z, out.factored)
    assert torch.allclose(back, x, atol=1e-9)
    assert torch.equal(unsqueeze2d(squeeze2d(x)), x)


def test_log_determinant_equals_brute_force_jacobian():
    torch.manual_seed(1)
    model = Glow(hidden_channels=8, K=2, L=2, image_shape=(3, 8, 8)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.mark_initialized()
    model.eval()
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64) - 0.5

    def latents(inp):
        out = model.transform(inp)
        return torch.cat([t.flatten() for t in (*out.factored, out.z)])

    jac = torch.autograd.functional.jacobian(latents, x).reshape(192, 192)
    sign, logabsdet = torch.linalg.slogdet(jac)
    assert sign != 0
    with torch.no_grad():
        logdet = model.transform(x).logdet
    assert logdet.item() == pytest.approx(logabsdet.item(), abs=1e-8)


def _tamper(state, how):
    state = dict(state)
    if how == "missing":
        state.pop("flow.layers.1.invconv.lower")
    elif how == "unexpected":
        state["flow.layers.1.extra.weight"] = torch.zeros(3)
    elif how == "shape":
        state["prior_h"] = torch.zeros(1, 90, 4, 4)
    return state


@pytest.mark.parametrize(
    "how,message",
    [
        ("missing", r"1 missing keys \(flow\.layers\.1\.invconv\.lower\)"),
        ("unexpected", r"1 unexpected keys \(flow\.layers\.1\.extra\.weight\)"),
        ("shape", r"1 shape mismatches \(prior_h: file \(1, 90, 4, 4\) vs model \(1, 96, 4, 4\)\)"),
    ],
)
def test_wrong_checkpoints_are_refused_clearly(reference, tmp_path, how, message):
    ckpt, hp = _published_files(tmp_path, _tamper(reference["state"], how), reference["hparams"])
    with pytest.raises(
        CheckpointError, match=r"glow_affine_coupling\.pt: does not match the Glow configuration: " + message
    ):
        load_published_glow(ckpt, hp)


def test_wrong_hparams_and_files_are_refused(reference, tmp_path):
    ckpt, hp = _published_files(tmp_path, reference["state"], {**reference["hparams"], "hidden_channels": 32})
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_published_glow(ckpt, hp)
    _, hp = _published_files(tmp_path, reference["state"], {**reference["hparams"], "y_condition": True})
    with pytest.raises(CheckpointError, match="class-conditional Glow"):
        load_published_glow(ckpt, hp)
    with pytest.raises(ConfigError, match=r"flow\.pretrained\.checkpoint: file .*nope\.pt does not exist"):
        load_published_glow(tmp_path / "nope.pt", hp)
    ckpt, hp = _published_files(tmp_path, reference["state"], reference["hparams"])
    ckpt.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not loadable with weights_only=True"):
        load_published_glow(ckpt, hp)


def test_import_published_flow_writes_our_checkpoint(reference, smoke_run, tmp_path):
    ckpt, hp = _published_files(tmp_path, reference["state"], reference["hparams"])
    metrics = import_published_flow(
        ckpt,
        hp,
        smoke_run / "results/data/synthetic-smoke.h5",
        tmp_path / "model.pt",
        tmp_path / "metrics.json",
        device="cpu",
        eval_batch_size=250,
    )
    assert metrics["source"] == "pretrained" and np.isfinite(metrics["test_bpd"])
    model = load_flow(tmp_path / "model.pt")
    with torch.no_grad():
        z, _ = model(torch.from_numpy(reference["x"]))
    assert np.abs(z.numpy() - reference["z"]).max() < 1e-4


def test_flow_training_lowers_bits_per_dim(smoke_run):
    epochs = pd.read_csv(smoke_run / "results/flow/synthetic-smoke/epochs.csv")
    metrics = json.loads((smoke_run / "results/flow/synthetic-smoke/metrics.json").read_text())
    assert len(epochs) == 3
    assert epochs["test_bpd"].iloc[-1] < epochs["test_bpd"].iloc[0]
    assert epochs["train_bpd"].iloc[-1] < epochs["train_bpd"].iloc[0]
    assert 0 < metrics["test_bpd"] < 8  # far below the 8 bits/dim of a uniform model
    assert metrics["top_latent_shape"] == [48, 4, 4]


def test_latent_files_match_the_config(smoke_run):
    root = smoke_run / "results/latents/synthetic-smoke"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.h5"))
    expected = sorted(
        [f"clean/{s}.h5" for s in ("train", "test", "calibration")]
        + [f"{a}/eps0.03/{s}.h5" for a in ("fgsm", "pgd", "deepfool", "pgd_8bit") for s in ("train", "test")]
    )
    assert files == expected
    calibration = read_latents(root / "clean/calibration.h5")
    assert calibration.z.shape == (200, 48, 4, 4)  # every calibration image (dataset.calibration_size)
    for split in ("train", "test"):
        clean = read_latents(root / f"clean/{split}.h5")
        assert clean.z.shape == (500, 48, 4, 4) and clean.z.dtype == np.float32
        assert clean.bpd.shape == (500,) and np.isfinite(clean.bpd).all()
        for attack in ("fgsm", "pgd", "deepfool"):
            adv = read_latents(root / f"{attack}/eps0.03/{split}.h5")
            assert np.array_equal(adv.index, clean.index)  # attacked and clean images line up
            assert adv.z.shape == clean.z.shape and adv.attrs["attack"] == attack
            assert adv.success.dtype == bool
            assert not np.allclose(adv.z, clean.z)


def test_latents_are_deterministic(smoke_run, tmp_path):
    from advdefense.config import load_yaml, validate_config
    from advdefense.flow import clean_latents

    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    out = tmp_path / "again.h5"
    clean_latents(
        smoke_run / "results/data/synthetic-smoke.h5",
        smoke_run / "results/flow/synthetic-smoke/model.pt",
        "test",
        out,
        images=cfg["attack_defaults"]["images"]["test"],
        seed=cfg["seed"],
        device="cpu",
        batch_size=cfg["latents"]["batch_size"],
    )
    first = read_latents(smoke_run / "results/latents/synthetic-smoke/clean/test.h5")
    again = read_latents(out)
    assert np.array_equal(first.z, again.z) and np.array_equal(first.bpd, again.bpd)
