"""Input transformations that are not differentiable everywhere, and the one way this package differentiates
through them: BPDA (Athalye, Carlini & Wagner, ICML 2018).

`straight_through(x, transformed)` returns `transformed` in the forward pass and passes the gradient to `x`
unchanged in the backward pass (the identity as the backward approximation of the transformation): what an
attack that knows a rounding or a median needs, since their true gradient is zero almost everywhere (rounding)
or reaches one pixel in four (a 2 x 2 median). Every transformation here returns its output through it.

`reduce_bit_depth` and `median_smooth` are the squeezers of feature squeezing (Xu, Evans & Qi, NDSS 2018: 5-bit
depth and 2 x 2 median smoothing for CIFAR-10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def straight_through(x: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """`transformed` forward, the identity backward (BPDA): d out / d x = I."""
    return x + (transformed - x).detach()


def reduce_bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Pixels in [0, 1] rounded to 2^bits levels (Xu et al.'s bit-depth squeezer), with the BPDA backward."""
    levels = 2**bits - 1
    return straight_through(x, torch.round(x.clamp(0, 1) * levels) / levels)


def median_smooth(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel replaced by the median of the size x size window that starts at it, per channel (edges
    padded by reflection; for an even size the lower of the two middle values, as torch.median gives), with the
    BPDA backward."""
    if size < 2:
        return x
    pad = size - 1
    padded = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), mode="reflect")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # N, C, H, W, size, size
    smoothed = windows.reshape(*windows.shape[:4], size * size).median(-1).values
    return straight_through(x, smoothed)
