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
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-6))

    def forward(self, x):
        return (x - self.mean) / self.std


class LatentMLP(nn.Module):
    """The paper's detector: 5 fully connected layers on the flattened Glow latent -> one logit."""

    def __init__(self, in_features: int = 768, widths=(512, 256, 128, 64), dropout: float = 0.0):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"detection.latent_mlp.widths: 5 layers need 4 hidden widths, got {list(widths)}")
        self._arch = {"name": "latent_mlp", "in_features": in_features, "widths": list(widths), "dropout": dropout}
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


class PixelCNNDetector(nn.Module):
    """A separate binary CNN on raw pixels (Gong et al. 2017 style baseline) -> one logit."""

    def __init__(self, width: int = 32):
        super().__init__()
        self._arch = {"name": "pixel_cnn", "width": width}
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * w * 64, 128), nn.ReLU(), nn.Linear(128, 1),
        )

    @property
    def arch(self) -> dict:
        return dict(self._arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
