"""StyleGAN's mapping network (Karras et al. 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks"), in the form of stylegan2-pytorch's `model.py`.

z (B, z_dim) -> pixel norm -> n_mlp x [EqualLinear(lr_mul) -> LeakyReLU(0.2)] -> w (B, w_dim)

- Pixel norm puts z on the sphere of radius sqrt(z_dim), so only its direction matters.
- EqualLinear is the equalised learning rate (Karras et al. 2018, "Progressive Growing of
  GANs"): the weight is stored as N(0, 1) / lr_mul and scaled at run time by
  lr_mul / sqrt(in_dim). With Adam, whose steps are invariant to the gradient's scale, the
  effective weight then moves lr_mul times as fast as an ordinary one: the mapping learns
  100x slower than the generator at lr_mul = 0.01, from one optimizer and one learning rate.
- The nonlinearity between the layers is the point: without it the stack is one affine
  map and cannot disentangle anything.
- `w_avg` is a running mean of w for the truncation trick, w_avg + psi * (w - w_avg): psi < 1
  trades diversity for quality, psi = 0 gives the "average sentence" for every z.

Dimension letters: B batch, L style layers (the generator's n_styles), D z_dim or w_dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class MappingConfig:
    z_dim: int = 64             # latent z ~ N(0, I)
    w_dim: int = 64             # intermediate latent (style) w
    n_mlp: int = 4              # EqualLinear + LeakyReLU layers (StyleGAN uses 8 at 512 wide)
    lr_mul: float = 0.01        # learning-rate multiplier of the mapping layers (StyleGAN: 0.01)
    w_avg_decay: float = 0.995  # decay of the running mean of w kept for truncation

    def __post_init__(self):
        for name in ("z_dim", "w_dim", "n_mlp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MappingConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lr_mul <= 0:
            raise ValueError(f"MappingConfig.lr_mul must be > 0, got {self.lr_mul}")
        if not 0.0 <= self.w_avg_decay < 1.0:
            raise ValueError(f"MappingConfig.w_avg_decay must be in [0, 1), got {self.w_avg_decay}")


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) over the channel dimension (ProGAN's pixelwise normalisation)."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """A linear layer with the equalised learning rate and a learning-rate multiplier.

    Not an nn.Linear subclass on purpose: the generator's N(0, 0.02) initialisation of
    nn.Linear layers must leave these weights alone.
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        # as in stylegan2-pytorch: stored as bias_init and used * lr_mul, so the effective bias
        # starts at bias_init * lr_mul and moves lr_mul times as fast as an ordinary one
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)  # He constant applied at run time
        self.lr_mul = lr_mul

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def extra_repr(self):
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, lr_mul={self.lr_mul}"


class ScaledLeakyReLU(nn.Module):
    """LeakyReLU(0.2) times sqrt(2), the gain of stylegan2's fused_leaky_relu: it keeps the
    activations' second moment near 1 through the stack, which the He-scaled EqualLinear assumes."""

    def __init__(self, negative_slope: float = 0.2):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope) * math.sqrt(2.0)


class MappingNetwork(nn.Module):
    def __init__(self, config: MappingConfig):
        super().__init__()
        self.config = config
        layers = [PixelNorm()]
        for i in range(config.n_mlp):
            in_dim = config.z_dim if i == 0 else config.w_dim
            layers += [EqualLinear(in_dim, config.w_dim, lr_mul=config.lr_mul), ScaledLeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))  # saved in the state_dict

    def forward(self, z):
        """z (B, z_dim) -> w (B, w_dim). Pure: the running mean is updated by `update_w_avg`."""
        if z.size(-1) != self.config.z_dim:
            raise ValueError(f"z has {z.size(-1)} channels, the mapping expects z_dim={self.config.z_dim}")
        return self.net(z)

    @torch.no_grad()
    def update_w_avg(self, w):
        """Move w_avg towards the batch mean of w (B, w_dim) or (B, L, w_dim); call once per G step."""
        batch_mean = w.detach().reshape(-1, w.size(-1)).mean(dim=0).to(self.w_avg.dtype)
        self.w_avg.lerp_(batch_mean, 1.0 - self.config.w_avg_decay)

    @torch.no_grad()
    def estimate_w_avg(self, n: int = 4096, generator: torch.Generator | None = None):
        """Set w_avg to the mean of w over n fresh z (stylegan2-pytorch's `mean_latent`);
        useful for a checkpoint whose running mean was never updated."""
        z = torch.randn(n, self.config.z_dim, generator=generator, device=self.w_avg.device)
        self.w_avg.copy_(self(z).mean(dim=0))
        return self.w_avg

    def truncate(self, w, psi: float):
        """Truncation trick: w_avg + psi * (w - w_avg); psi = 1 is the identity, psi = 0 gives w_avg."""
        if psi == 1.0:
            return w
        return self.w_avg + psi * (w - self.w_avg)
