"""AutoAttack as an attack kind: the same adversarials as the authors' package called directly, the worst case
over its sub-attacks with the one that succeeded recorded, its warnings kept, and agreement with a second
implementation (torchattacks' port)."""

import pytest
import torch
from torch import nn

from advdefense.autoattack import AutoAttackRunner

pyautoattack = pytest.importorskip("pyautoattack")


def linear_model(seed: int = 0) -> nn.Module:
    """A random linear classifier on the pixels: its logits move with every pixel, so at a small epsilon some
    images are fooled by the first sub-attack, some only by later ones, some not at all (a random CNN with
    global pooling barely depends on its input and is never fooled)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()


def images(model: nn.Module, n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::7] = (y[::7] + 1) % 10  # some images misclassified already when clean
    return x, y


@pytest.mark.parametrize("norm,eps", [("linf", 1 / 255), ("l2", 0.1)])
def test_one_batch_is_the_package_run_directly(norm, eps):
    model = linear_model()
    x, y = images(model, 24)
    runner = AutoAttackRunner(model, norm, eps, {"version": "standard"}, "cpu")
    adv, sub = runner(x, y, 1234)
    warned = runner.finish()
    package = pyautoattack.AutoAttack(
        model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version="standard", device="cpu", seed=1234
    )
    expected, _ = package.run_standard_evaluation(x, y, batch_size=len(x))
    assert torch.equal(adv, expected)  # adversarial for adversarial

    with torch.no_grad():
        clean_ok, adv_ok = model(x).argmax(1) == y, model(adv).argmax(1) == y
    fooled = clean_ok & ~adv_ok
    assert 0 < int(fooled.sum()) < int(clean_ok.sum())  # a mix: the later sub-attacks had images to work on
    assert torch.equal(sub >= 0, fooled)  # a sub-attack is named exactly for the images it fooled
    assert runner.sub_attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert torch.equal(adv[~clean_ok], x[~clean_ok])  # misclassified images are left as they are
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps * (1 + 1e-5) and adv.min() >= 0 and adv.max() <= 1
    assert warned == []  # a plain deterministic logit model raises none of the package's flags


def test_package_warnings_are_kept():
    """A model that returns probabilities, not logits, is flagged by the package; the runner keeps the flag."""
    model = nn.Sequential(linear_model(), nn.Softmax(dim=1)).eval()
    x, y = images(model, 8)
    runner = AutoAttackRunner(model, "linf", 1 / 255, {"version": "custom", "attacks": ["apgd-ce"]}, "cpu")
    runner(x, y, 0)
    warned = runner.finish()
    assert any("probability distribution" in w for w in warned), warned


def test_batches_are_independent_of_each_other():
    """A batch's result depends on its images and seed only (what sharded jobs rely on)."""
    model = linear_model()
    x, y = images(model, 16)
    params = {"version": "custom", "attacks": ["apgd-ce", "apgd-t"]}
    whole, _ = AutoAttackRunner(model, "linf", 1 / 255, params, "cpu")(x[:8], y[:8], 7)
    runner = AutoAttackRunner(model, "linf", 1 / 255, params, "cpu")
    runner(x[8:], y[8:], 3)  # another batch first
    again, _ = runner(x[:8], y[:8], 7)
    assert torch.equal(whole, again)


def test_agrees_with_torchattacks_port():
    """The authors' code and torchattacks' port of AutoAttack (standard version) on one model and the same
    images: robust accuracy within 3 images of 60 (5 points). They share the algorithm, not the code or the
    random draws."""
    torchattacks = pytest.importorskip("torchattacks")
    model = linear_model()
    x, y = images(model, 60)
    eps = 1 / 255
    ours, _ = AutoAttackRunner(model, "linf", eps, {"version": "standard"}, "cpu")(x, y, 0)
    theirs = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)(
        x, y
    )
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        robust_ours = (model(ours).argmax(1) == y).float().mean().item()
        robust_theirs = (model(theirs).argmax(1) == y).float().mean().item()
    assert robust_ours < clean - 0.2  # the attack does something at this epsilon
    assert abs(robust_ours - robust_theirs) <= 3 / 60 + 1e-9, (robust_ours, robust_theirs)
