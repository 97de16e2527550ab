"""Batch augmentation on tensors (on whatever device the batch lives), CIFAR style."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RandomCropFlip:
    """Random crop after zero padding by `padding` pixels, and a random horizontal flip.

    Works on a whole N x C x H x W batch at once with one gather, so it runs on the GPU
    when the batch is there. Randomness comes from the CPU generator passed in (so the
    training loop can save and restore it for exact resumption).
    """

    def __init__(self, padding: int = 4, flip: bool = True):
        if padding < 0:
            raise ValueError(f"augment.crop_padding must be >= 0, got {padding}")
        self.padding = padding
        self.flip = flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        dev = x.device
        if p > 0:
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(dev)
        else:
            dy = dx = torch.zeros(n, dtype=torch.long, device=dev)
        cols = dx[:, None] + torch.arange(w, device=dev)[None, :]  # n x w
        if self.flip:
            flip = torch.rand(n, generator=generator).to(dev) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        if p == 0 and not self.flip:
            return x
        padded = F.pad(x, (p, p, p, p)) if p > 0 else x
        rows = dy[:, None] + torch.arange(h, device=dev)[None, :]  # n x h
        batch_idx = torch.arange(n, device=dev)[:, None, None, None]
        chan_idx = torch.arange(c, device=dev)[None, :, None, None]
        return padded[batch_idx, chan_idx, rows[:, None, :, None], cols[:, None, None, :]]
