import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from advdefense.attacks import run_attack
from advdefense.data import make_synthetic
from advdefense.inference import LogitRecorder, evaluation_model, predict
from advdefense.models import CifarResNet
from advdefense.models.autoencoder import ConvAutoencoder
from advdefense.plan.jobs import AttackJob


def _trained_like(model):
    """Non-trivial batch-norm statistics, as after training."""
    torch.manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, 3, 32, 32))
    return model.eval()


def test_evaluation_copy_is_the_same_function_and_leaves_the_model_alone():
    model = _trained_like(CifarResNet(8))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = evaluation_model(model)
    x = torch.rand(16, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(copy(x), model(x), atol=1e-4)
    assert copy.is_evaluation_copy and not any(p.requires_grad for p in copy.parameters())
    assert copy.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(p.requires_grad for p in model.parameters()) and model.conv1.weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert evaluation_model(copy) is copy  # no double folding


def test_evaluation_copy_of_the_defended_model():
    from advdefense.purifiers import Defended

    defended = Defended(ConvAutoencoder([8, 16]), _trained_like(CifarResNet(8))).eval()
    copy = evaluation_model(defended)
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(copy(x), defended(x), atol=1e-4)
    assert (
        isinstance(copy, Defended) and copy.classifier.is_evaluation_copy and copy.purifier.is_evaluation_copy
    )
    assert copy.purifier.encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in copy.parameters())
    assert all(p.requires_grad for p in defended.parameters())


def test_predict_takes_uint8_and_float_and_agrees_with_the_model():
    model = _trained_like(CifarResNet(8))
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    a = predict(model, images, batch_size=16)
    b = predict(model, images.float() / 255, batch_size=40)
    assert a.dtype == torch.long and a.shape == (40,) and torch.equal(a, b)
    with torch.no_grad():
        logits = model(images.float() / 255)
    top2 = logits.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert torch.equal(a[clear], logits.argmax(1)[clear])
    assert len(predict(model, images[:0], 8)) == 0


def test_logit_recorder_only_answers_for_inputs_it_saw_unchanged():
    net = LogitRecorder(torch.nn.Linear(4, 3))
    x0, x1 = torch.rand(5, 4), torch.rand(5, 4)
    l0 = net(x0)
    net(x1)
    assert torch.equal(net.recorded_predictions(x0), l0.argmax(1))  # the first pass
    assert net.recorded_predictions(x1) is not None  # the latest pass
    assert net.recorded_predictions(torch.rand(5, 4)) is None
    x1.add_(1.0)  # changed in place after its forward pass: the record must not match it any more
    assert net.recorded_predictions(x1) is None
    net.reset()
    assert net.recorded_predictions(x0) is None


class CountingResNet(CifarResNet):
    calls = 0

    def forward(self, x):
        CountingResNet.calls += 1
        return super().forward(x)


@pytest.mark.parametrize(
    "cls,params,passes_per_batch",
    [
        (
            "FGSM",
            {},
            2,
        ),  # gradient at x (gives pred_clean) + the success check on the output (gives pred_adv)
        ("LinfPGD", {"steps": 3, "abs_stepsize": 0.01, "random_start": True}, 3 + 1 + 1),  # + pred_clean
    ],
)
def test_attack_stage_reuses_the_attacks_own_forward_passes(cls, params, passes_per_batch):
    torch.manual_seed(0)
    model = _trained_like(CountingResNet(8))
    ds = make_synthetic(64, 10, seed=0)
    spec = {"class": cls, "norm": "linf", "epsilons": [0.02], "params": params}
    out = Path(tempfile.mkdtemp()) / "a.h5"
    CountingResNet.calls = 0
    run_attack(
        model,
        ds.train.images[:64],
        ds.train.labels[:64],
        np.arange(64),
        AttackJob(name="a", spec=spec, eps=0.02, seed=0, batch_size=32),
        out,
        device=torch.device("cpu"),
        attrs={},
    )
    assert CountingResNet.calls == 2 * passes_per_batch
    with h5py.File(out) as f:
        assert np.array_equal(f["pred_adv"][()], predict(model, torch.from_numpy(f["adv"][()]), 32).numpy())
        assert np.array_equal(
            f["pred_clean"][()], predict(model, torch.from_numpy(ds.train.images), 32).numpy()
        )
