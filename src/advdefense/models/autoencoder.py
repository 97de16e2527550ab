"""Convolutional autoencoder of the paper's Figure 2.

Four convolutional layers: two stride-2 convolutions that shrink 32x32 -> 16x16 -> 8x8 and two
transposed convolutions that grow back to 32x32, a sigmoid keeping pixels in [0, 1]. The code is the second
convolution's output, widths[1] x 8 x 8 values: the paper's autoencoder "decreases the dimension", so its
setting (config/README.md) has widths [32, 16], a code of 1024 values for an image of 3072; widths [32, 64] (a
code of 4096) trained with input noise is the denoising autoencoder in MagNet's style that this project used first.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid}


class ConvAutoencoder(nn.Module):
    def __init__(
        self,
        widths: list[int] | tuple[int, int] = (32, 64),
        kernel: int = 3,
        activation: str = "relu",
        batch_norm: bool = False,
    ):
        super().__init__()
        if len(widths) != 2 or min(widths) < 1:
            raise ValueError(f"autoencoder.widths: need two positive widths, got {widths!r}")
        if kernel % 2 != 1:
            raise ValueError(f"autoencoder.kernel: must be odd, got {kernel}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"autoencoder.activation: unknown {activation!r} (use {', '.join(ACTIVATIONS)})")
        self._arch = {
            "name": "autoencoder",
            "widths": list(widths),
            "kernel": kernel,
            "activation": activation,
            "batch_norm": batch_norm,
        }
        w1, w2 = widths
        pad = kernel // 2
        act = ACTIVATIONS[activation]

        def norm(c):
            return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

        self.encoder = nn.Sequential(
            nn.Conv2d(3, w1, kernel, stride=2, padding=pad),
            norm(w1),
            act(),
            nn.Conv2d(w1, w2, kernel, stride=2, padding=pad),
            norm(w2),
            act(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w2, w1, kernel, stride=2, padding=pad, output_padding=1),
            norm(w1),
            act(),
            nn.ConvTranspose2d(w1, 3, kernel, stride=2, padding=pad, output_padding=1),
            nn.Sigmoid(),
        )

    @property
    def arch(self) -> dict:
        return dict(self._arch)

    @property
    def code_values(self) -> int:
        """Values of the code for one 3 x 32 x 32 image (the image itself has 3072)."""
        return self._arch["widths"][1] * 8 * 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
