"""Binary clean-vs-attacked classifiers: the paper's latent MLP and a raw-pixel CNN baseline."""

from __future__ import annotations

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with statistics fitted on training data and saved with the model."""

    def __init__(self, features: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        x = x.flatten(1)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))

    def forward(self, x):
        return (x - self.mean) / self.std


class LatentMLP(nn.Module):
    """The paper's detector: 5 fully connected layers on the flattened Glow latent -> one logit."""

    def __init__(self, in_features: int = 768, widths=(512, 256, 128, 64), dropout: float = 0.0):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(
                f"detection.latent_mlp.widths: 5 layers need 4 hidden widths, got {list(widths)}"
            )
        self._arch = {
            "name": "latent_mlp",
            "in_features": in_features,
            "widths": list(widths),
            "dropout": dropout,
        }
        self.standardize = Standardize(in_features)
        layers, prev = [], in_features
        for w in widths:
            layers += [nn.Linear(prev, w), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            prev = w
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    @property
    def arch(self) -> dict:
        return dict(self._arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x.flatten(1))).squeeze(1)


class ChannelStandardize(nn.Module):
    """Per-channel (x - mean) / std with statistics fitted on the training images, saved with the model."""

    def __init__(self, channels: int = 3):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean((0, 2, 3), keepdim=True))
        self.std.copy_(x.std((0, 2, 3), keepdim=True).clamp_min(1e-6))

    def forward(self, x):
        return (x - self.mean) / self.std


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class PixelCNNDetector(nn.Module):
    """A separate binary CNN on raw pixels (Gong et al. 2017 style baseline) -> one logit.

    Input standardisation and batch normalisation matter: without them the ±eps perturbation is a tiny
    fraction of the input's scale and the network stayed at chance (training loss ln 2) in every run."""

    def __init__(self, width: int = 32):
        super().__init__()
        self._arch = {"name": "pixel_cnn", "width": width}
        w = width
        self.standardize = ChannelStandardize(3)
        self.net = nn.Sequential(
            *_conv_bn_relu(3, w),
            *_conv_bn_relu(w, w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 2 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * w, 1),
        )

    @property
    def arch(self) -> dict:
        return dict(self._arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x)).squeeze(1)
