"""Input transformations of the reference defences, and how an attack that knows them differentiates through
them (Athalye, Carlini & Wagner, ICML 2018).

`straight_through(x, transformed)` returns `transformed` in the forward pass and passes the gradient to `x`
unchanged in the backward pass: BPDA with the identity as the backward approximation, for a step whose true
gradient is zero almost everywhere (rounding: `reduce_bit_depth`). A step that is piecewise linear keeps its true
gradient: `median_smooth` passes each output pixel's gradient to the input pixel that is its window's median,
which says exactly which pixels to move (the identity would spread it over pixels the median ignores).

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
    padded by reflection; for an even size the lower of the two middle values, as torch.median gives), with its
    true gradient (to the median pixel of each window)."""
    if size < 2:
        return x
    pad = size - 1
    padded = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), mode="reflect")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # N, C, H, W, size, size
    # piecewise linear: its true gradient (to the window's median pixel) is what an attacker uses, not BPDA
    return windows.reshape(*windows.shape[:4], size * size).median(-1).values
