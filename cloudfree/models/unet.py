"""Residual U-Net: refines the TimeGate composite with spatial context.

output = composite + γ · correction, with γ a learnable scalar initialised small, so an untrained
or over-cautious network degrades to the TimeGate composite rather than to noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResidualUNet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = 8 if cout % 8 == 0 else 1
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"), nn.GroupNorm(groups, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1, padding_mode="reflect"), nn.GroupNorm(groups, cout), nn.SiLU(),
    )


class ResidualUNet(nn.Module):
    """U-Net with skip connections; ``depth`` downsamplings, ``width`` channels at the top level."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, depth: int = 4, gamma_init: float = 0.01,
                 max_width: int = 256):
        super().__init__()
        self.depth = depth
        chans = [min(width * 2**i, max_width) for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        nn.init.zeros_(self.head.bias)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def correction(self, z: torch.Tensor) -> torch.Tensor:
        """The unscaled correction for input ``z`` (B, in, H, W); any H, W (padded internally)."""
        h, w = z.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            z = F.pad(z, (0, pw, 0, ph), mode="replicate")
        skips = []
        for i, blk in enumerate(self.down):
            z = blk(z if i == 0 else F.max_pool2d(z, 2))
            skips.append(z)
        z = skips.pop()
        for up, dec in zip(self.up, self.dec):
            z = dec(torch.cat([up(z), skips.pop()], dim=1))
        return self.head(z)[..., :h, :w]

    def forward(self, composite: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return composite + self.gamma * self.correction(z)
