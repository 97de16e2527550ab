"""Glow (Kingma & Dhariwal 2018): a multi-scale normalizing flow.

Architecture: for each of L levels, squeeze (2x2 space-to-depth), K flow steps, and (except
after the last level) a split that factors half the channels out under a learned Gaussian.
Each flow step is ActNorm -> invertible 1x1 convolution (LU-decomposed, or a fixed
permutation) -> coupling (affine or additive). With L=3 on 3x32x32 the top latent is 48x4x4.

Module and parameter names follow the published CIFAR-10 checkpoint (see
`shared/reference/glow/FORMAT.md`), so its state dict loads onto this module unchanged.

Input convention: x = pixels/256 - 0.5 (pixels 0..255), so x lies in [-0.5, 0.5). Training adds
uniform dequantisation noise U(0, 1/256); the constant -log(256) per dimension is always part
of the log-likelihood, so bits/dim are comparable with the literature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


@dataclass
class FlowOutput:
    z: torch.Tensor  # top latent, e.g. N x 48 x 4 x 4
    factored: list  # latents factored out by each split, outermost first
    logdet: torch.Tensor  # log |det d(latents)/dx| per image
    log_prior: torch.Tensor  # log density of all latents under their (conditional) priors


def gaussian_log_p(x: torch.Tensor, mean: torch.Tensor, logs: torch.Tensor) -> torch.Tensor:
    """Element-wise log N(x; mean, exp(logs)^2)."""
    return -0.5 * (2.0 * logs + (x - mean) ** 2 * torch.exp(-2.0 * logs) + LOG_2PI)


def gaussian_log_likelihood(x, mean, logs) -> torch.Tensor:
    return gaussian_log_p(x, mean, logs).flatten(1).sum(1)


def squeeze2d(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze2d(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


class ActNorm2d(nn.Module):
    """Per-channel affine y = (x + bias) * exp(logs), initialised from the first batch it sees
    so that its output has zero mean and unit variance per channel ("data-dependent init")."""

    def __init__(self, channels: int, scale: float = 1.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.scale = scale
        self.initialized = False  # not a buffer: keeps the published state-dict keys

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
        self.bias.data.copy_(-mean)
        self.logs.data.copy_(torch.log(self.scale / (var.sqrt() + 1e-6)))
        self.initialized = True

    def forward(self, x: torch.Tensor, logdet: torch.Tensor | None = None, reverse: bool = False):
        if not self.initialized and self.training and not reverse:
            self.initialize(x)
        dlogdet = x.shape[2] * x.shape[3] * self.logs.sum()
        if reverse:
            x = x * torch.exp(-self.logs) - self.bias
            return x, (None if logdet is None else logdet - dlogdet)
        x = (x + self.bias) * torch.exp(self.logs)
        return x, (None if logdet is None else logdet + dlogdet)


class Conv2dActNorm(nn.Module):
    """Bias-free convolution followed by ActNorm (log-det ignored): block layers 0 and 2."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.conv.weight.data.normal_(0.0, 0.05)
        self.actnorm = ActNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actnorm(self.conv(x))[0]


class Conv2dZeros(nn.Module):
    """Zero-initialised 3x3 convolution whose output is scaled by exp(3 * logs)."""

    def __init__(self, cin: int, cout: int, logscale_factor: float = 3.0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv.weight.data.zero_()
        self.conv.bias.data.zero_()
        self.logs = nn.Parameter(torch.zeros(cout, 1, 1))
        self.logscale_factor = logscale_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.exp(self.logs * self.logscale_factor)


class InvertibleConv1x1(nn.Module):
    """Invertible 1x1 convolution W = P L U (LU-decomposed) with log|det| = H W sum(log_s)."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels, generator=generator))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diag(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.lower = nn.Parameter(lower)
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))
        self.upper = nn.Parameter(torch.triu(upper, 1))

    def weight(self) -> torch.Tensor:
        c = self.lower.shape[0]
        eye = torch.eye(c, dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x, logdet=None, reverse=False):
        dlogdet = x.shape[2] * x.shape[3] * self.log_s.sum()
        w = self.weight()
        if reverse:
            x = F.conv2d(x, torch.linalg.inv(w)[:, :, None, None])
            return x, (None if logdet is None else logdet - dlogdet)
        x = F.conv2d(x, w[:, :, None, None])
        return x, (None if logdet is None else logdet + dlogdet)


class Permute2d(nn.Module):
    """A fixed channel permutation (reverse or random shuffle): zero log-det."""

    def __init__(self, channels: int, shuffle: bool, generator: torch.Generator | None = None):
        super().__init__()
        order = (
            torch.randperm(channels, generator=generator) if shuffle else torch.arange(channels - 1, -1, -1)
        )
        self.register_buffer("indices", order)
        self.register_buffer("indices_inverse", torch.argsort(order))

    def forward(self, x, logdet=None, reverse=False):
        return x[:, self.indices_inverse if reverse else self.indices], logdet


def coupling_block(cin: int, cout: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        Conv2dActNorm(cin, hidden, 3),
        nn.ReLU(),
        Conv2dActNorm(hidden, hidden, 1),
        nn.ReLU(),
        Conv2dZeros(hidden, cout),
    )


class FlowStep(nn.Module):
    def __init__(
        self,
        channels: int,
        hidden: int,
        actnorm_scale: float,
        permutation: str,
        coupling: str,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.coupling = coupling
        self.actnorm = ActNorm2d(channels, actnorm_scale)
        if permutation == "invconv":
            self.invconv = InvertibleConv1x1(channels, generator)
        else:
            self.permute = Permute2d(channels, shuffle=(permutation == "shuffle"), generator=generator)
        out = channels if coupling == "affine" else channels - channels // 2
        self.block = coupling_block(channels // 2, out, hidden)

    def _permutation(self):
        return self.invconv if hasattr(self, "invconv") else self.permute

    def _coupling(self, x, logdet, reverse):
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        h = self.block(x1)
        if self.coupling == "additive":
            x2 = x2 - h if reverse else x2 + h
            return torch.cat([x1, x2], 1), logdet
        shift, scale = h[:, 0::2], torch.sigmoid(h[:, 1::2] + 2.0)
        dlogdet = torch.log(scale).flatten(1).sum(1)
        if reverse:
            x2 = x2 / scale - shift
            return torch.cat([x1, x2], 1), (None if logdet is None else logdet - dlogdet)
        x2 = (x2 + shift) * scale
        return torch.cat([x1, x2], 1), (None if logdet is None else logdet + dlogdet)

    def forward(self, x, logdet=None, reverse=False):
        if reverse:
            x, logdet = self._coupling(x, logdet, True)
            x, logdet = self._permutation()(x, logdet, True)
            return self.actnorm(x, logdet, True)
        x, logdet = self.actnorm(x, logdet)
        x, logdet = self._permutation()(x, logdet)
        return self._coupling(x, logdet, False)


class Split2d(nn.Module):
    """Factor out the second half of the channels under N(mean(x1), exp(logs(x1)))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = Conv2dZeros(channels // 2, channels)

    def prior(self, x1):
        h = self.conv(x1)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, x, log_prior):
        c = x.shape[1] // 2
        x1, x2 = x[:, :c], x[:, c:]
        mean, logs = self.prior(x1)
        return x1, x2, log_prior + gaussian_log_likelihood(x2, mean, logs)

    def reverse(self, x1, x2=None, temperature: float = 1.0):
        mean, logs = self.prior(x1)
        if x2 is None:
            x2 = mean + torch.exp(logs) * torch.randn_like(mean) * temperature
        return torch.cat([x1, x2], 1)


class Squeeze(nn.Module):
    def forward(self, x):
        return squeeze2d(x)


class FlowNet(nn.Module):
    def __init__(
        self,
        image_shape,
        hidden: int,
        K: int,
        L: int,
        actnorm_scale: float,
        permutation: str,
        coupling: str,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        c, h, w = image_shape
        self.layers = nn.ModuleList()
        for level in range(L):
            c, h, w = c * 4, h // 2, w // 2
            self.layers.append(Squeeze())
            for _ in range(K):
                self.layers.append(FlowStep(c, hidden, actnorm_scale, permutation, coupling, generator))
            if level < L - 1:
                self.layers.append(Split2d(c))
                c //= 2
        self.top_shape = (c, h, w)


class Glow(nn.Module):
    """The flow plus its learned top prior. `forward(x)` gives (top latent z, bits/dim)."""

    def __init__(
        self,
        hidden_channels: int = 512,
        K: int = 32,
        L: int = 3,
        actnorm_scale: float = 1.0,
        flow_permutation: str = "invconv",
        flow_coupling: str = "affine",
        learn_top: bool = True,
        image_shape: tuple[int, int, int] | list[int] = (3, 32, 32),
        n_bits: int = 8,
        seed: int = 0,
    ):
        super().__init__()
        if flow_permutation not in ("invconv", "shuffle", "reverse"):
            raise ValueError(
                f"flow.permutation: unknown permutation {flow_permutation!r} (invconv, shuffle, reverse)"
            )
        if flow_coupling not in ("affine", "additive"):
            raise ValueError(f"flow.coupling: unknown coupling {flow_coupling!r} (affine, additive)")
        c, h, w = image_shape
        if h % (2**L) or w % (2**L):
            raise ValueError(f"flow.L: {L} levels need the image size {h}x{w} to be divisible by {2**L}")
        self._arch = {
            "name": "glow",
            "hidden_channels": hidden_channels,
            "K": K,
            "L": L,
            "actnorm_scale": actnorm_scale,
            "flow_permutation": flow_permutation,
            "flow_coupling": flow_coupling,
            "learn_top": learn_top,
            "image_shape": list(image_shape),
            "n_bits": n_bits,
            "seed": seed,
        }
        generator = torch.Generator().manual_seed(seed)
        self.flow = FlowNet(
            (c, h, w), hidden_channels, K, L, actnorm_scale, flow_permutation, flow_coupling, generator
        )
        tc, th, tw = self.flow.top_shape
        self.register_buffer("prior_h", torch.zeros(1, 2 * tc, th, tw))
        if learn_top:
            self.learn_top_fn = Conv2dZeros(2 * tc, 2 * tc)
        self.n_bins = 2.0**n_bits
        self.dims = c * h * w

    @property
    def arch(self) -> dict:
        return dict(self._arch)

    @property
    def top_shape(self) -> tuple[int, int, int]:
        return self.flow.top_shape

    def prior(self, batch: int):
        h = self.prior_h.expand(batch, -1, -1, -1)
        if hasattr(self, "learn_top_fn"):
            h = self.learn_top_fn(h)
        c = h.shape[1] // 2
        return h[:, :c], h[:, c:]

    def preprocess(self, pixels01: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (as everywhere else in the pipeline) -> the flow's x in [-0.5, 0.5).

        p = q/255 for 8-bit q maps exactly onto q/256 - 0.5; adversarial pixels between the grid
        points map continuously (they are never rounded, which would erase part of the attack)."""
        return pixels01 * ((self.n_bins - 1) / self.n_bins) - 0.5

    def transform(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> FlowOutput:
        """x (already preprocessed) -> latents, the flow's log|det J| and the prior log-density.

        `noise`, if given, is uniform in [0, 1/n_bins) and added to x (dequantisation)."""
        if noise is not None:
            x = x + noise
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        log_prior = torch.zeros_like(logdet)
        factored = []
        for layer in self.flow.layers:
            if isinstance(layer, Squeeze):
                x = layer(x)
            elif isinstance(layer, Split2d):
                x, z2, log_prior = layer(x, log_prior)
                factored.append(z2)
            else:
                x, logdet = layer(x, logdet)
        mean, logs = self.prior(x.shape[0])
        return FlowOutput(x, factored, logdet, log_prior + gaussian_log_likelihood(x, mean, logs))

    def log_likelihood(self, out: FlowOutput) -> torch.Tensor:
        """Log-likelihood in nats of the discrete image: continuous density minus log(n_bins) per dim."""
        return out.log_prior + out.logdet - math.log(self.n_bins) * self.dims

    def bits_per_dim(self, log_likelihood: torch.Tensor) -> torch.Tensor:
        return -log_likelihood / (math.log(2.0) * self.dims)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        """(top latent z, bits/dim per image)."""
        out = self.transform(x, noise)
        return out.z, self.bits_per_dim(self.log_likelihood(out))

    def decode(self, z: torch.Tensor, factored: list[torch.Tensor] | None = None, temperature: float = 1.0):
        """Inverse: top latent (+ the factored-out latents, or samples from their priors) -> x."""
        factored = list(factored) if factored is not None else None
        x = z
        for layer in reversed(self.flow.layers):
            if isinstance(layer, Squeeze):
                x = unsqueeze2d(x)
            elif isinstance(layer, Split2d):
                x = layer.reverse(x, factored.pop() if factored else None, temperature)
            else:
                x, _ = layer(x, None, reverse=True)
        return x

    def sample(self, n: int, temperature: float = 0.7, generator: torch.Generator | None = None):
        mean, logs = self.prior(n)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return self.decode(mean + torch.exp(logs) * eps * temperature, None, temperature)

    def mark_initialized(self) -> None:
        """After loading trained weights, ActNorm layers must not re-initialise from data."""
        for m in self.modules():
            if isinstance(m, ActNorm2d):
                m.initialized = True

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.mark_initialized()
        return result
