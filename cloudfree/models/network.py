"""The full reconstruction network: band normalisation → TimeGate → U-Net or TerraMind head."""

from __future__ import annotations

import torch
from torch import nn

from ..bands import DEFAULT_NORM
from .timegate import TimeGate

__all__ = ["CloudFreeNet", "DEFAULT_NORM"]

class CloudFreeNet(nn.Module):
    """Series in, one cloud-free image out.

    ``forward`` takes reflectance (B,T,C,H,W) (NaN allowed where invalid), a validity mask
    (B,T,H,W), the time distance to the target in days (B,T) and optional padding flags (B,T);
    it returns a dict with ``output`` (B,C,H,W) reflectance, ``composite``, ``weights`` and
    ``coverage`` (0 where the pixel had no valid date: the output there is a spatial guess).
    """

    def __init__(self, head: nn.Module, timegate: TimeGate, mean: list[float], std: list[float]):
        super().__init__()
        self.timegate = timegate
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, dt: torch.Tensor | None = None,
                pad: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        valid = valid.bool() & torch.isfinite(x).all(2)
        xn = (torch.nan_to_num(x) - self.mean[:, None]) / self.std[:, None]
        tg = self.timegate(xn, valid, dt, pad)
        composite = tg.composite * self.std + self.mean
        composite = torch.where(tg.coverage > 0, composite, torch.zeros_like(composite))
        z = torch.cat([tg.composite, tg.features], dim=1)
        out = self.head(composite, z)
        return {"output": out, "composite": composite, "weights": tg.weights, "coverage": tg.coverage}
