"""The squeezers and their BPDA backward (advdefense.squeezers), and the feature-squeezing detector built on
them (Xu et al. 2018)."""

import pytest
import torch

from advdefense.detectors import DetectorContext, FeatureSqueezing
from advdefense.squeezers import median_smooth, reduce_bit_depth, straight_through


def test_bit_depth_rounds_to_its_levels_and_passes_the_gradient_through():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = reduce_bit_depth(x, 5)
    assert torch.equal(out * 31, (out * 31).round()) and (out - x).abs().max() <= 0.5 / 31 + 1e-6
    assert (out.detach().unique().numel()) <= 32
    out.sum().backward()
    assert torch.equal(
        x.grad, torch.ones_like(x)
    )  # BPDA: the identity backward, not rounding's zero gradient


def test_median_smoothing_keeps_flat_images_and_removes_a_lone_spike():
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.equal(median_smooth(flat, 2), flat)
    spiked = flat.clone()
    spiked[0, 1, 10, 10] = 1.0
    assert torch.allclose(median_smooth(spiked, 2), flat)  # one pixel in a 2 x 2 window is never its median
    assert torch.allclose(median_smooth(spiked, 3), flat)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    median_smooth(x, 2).sum().backward()
    # the true gradient: each output pixel's to its window's median pixel (inside, a pixel is the median of 0 to
    # 4 windows; at the edges the reflected padding shows it to more), so the gradients add up to the number of
    # output pixels
    assert float(x.grad.sum()) == x.numel()
    assert torch.equal(x.grad, x.grad.round()) and (x.grad >= 0).all() and (x.grad == 0).any()
    assert (
        x.grad[..., :-2, :-2].max() <= 4
    )  # (size 2 pads the last row and column by reflecting the one before)


def test_median_gradient_agrees_with_finite_differences():
    """The median is piecewise linear: away from ties, a central finite difference of a weighted sum of its
    outputs equals the autograd gradient (the check that catches a gradient rule that does not fit the step)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64)
    w = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (median_smooth(xr, 2) * w).sum().backward()
    h = 1e-7  # far below the smallest gap between two pixel values of one window
    for idx in [(0, 0, 0, 0), (0, 1, 3, 4), (0, 2, 7, 7), (0, 0, 5, 2), (0, 1, 6, 1)]:
        up, down = x.clone(), x.clone()
        up[idx] += h
        down[idx] -= h
        fd = float(((median_smooth(up, 2) - median_smooth(down, 2)) * w).sum()) / (2 * h)
        assert fd == pytest.approx(float(xr.grad[idx]), abs=1e-5), idx


def test_straight_through_is_the_transform_forward_and_the_identity_backward():
    x = torch.rand(3, requires_grad=True)
    y = straight_through(x, x.detach() ** 2 + 1)
    assert torch.allclose(y, x.detach() ** 2 + 1)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0]))


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 20


def _detector():
    context = DetectorContext(0, torch.device("cpu"), None, {"classifier": _Linear().eval()})
    return FeatureSqueezing({"bit_depth": 5, "median_size": 2}, context, "overall")


def test_feature_squeezing_scores_what_the_squeezers_change():
    """0 where squeezing changes nothing (a flat image on the 5-bit grid), more for high-frequency noise that
    the median removes; a score in [0, 2] (an L1 distance of probabilities); finite, non-zero gradients through
    the squeezers (BPDA), so the detector-aware attack can target it."""
    scorer = _detector().torch_scorer()
    flat = torch.full((2, 3, 32, 32), 16 / 31)
    assert torch.allclose(scorer(flat), torch.zeros(2), atol=1e-6)
    noisy = (flat + 0.2 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    scores = scorer(noisy)
    assert (scores > 1e-3).all() and (scores <= 2).all()
    x = noisy.clone().requires_grad_(True)
    scorer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # the numpy path (`score`, batched) gives the same numbers
    assert _detector().score(noisy.numpy(), batch_size=1) == pytest.approx(
        scores.detach().double().numpy(), abs=1e-6
    )
