"""TimeGate: per-pixel, per-date weights over a variable-length series (after Oehmcke et al. 2020).

A small network scores every date of every pixel from that date's reflectance, its validity, its
distance in time to the target, and how far it deviates from the pixel's clear-sky mean (which
exposes haze SCL missed). A softmax over time *restricted to valid dates* turns scores into
weights, so cloudy, missing and padded dates get exactly zero weight whatever T is.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TimeGate", "TimeGateOutput"]


class TimeGateOutput(dict):
    """``composite`` (B,C,H,W), ``features`` (B,K,H,W), ``weights`` (B,T,H,W), ``coverage`` (B,1,H,W)."""

    @property
    def composite(self) -> torch.Tensor:
        return self["composite"]

    @property
    def features(self) -> torch.Tensor:
        return self["features"]

    @property
    def weights(self) -> torch.Tensor:
        return self["weights"]

    @property
    def coverage(self) -> torch.Tensor:
        return self["coverage"]


class TimeGate(nn.Module):
    """Masked temporal attention pooling.

    Args:
        in_channels: spectral bands C.
        hidden: width of the per-date network.
        learned_features: K_l learned temporal features (pooled with the same weights).
        time_scale: days that map to 1.0 in the time-distance input.
    """

    def __init__(self, in_channels: int = 12, hidden: int = 64, learned_features: int = 16, time_scale: float = 60.0):
        super().__init__()
        self.in_channels = in_channels
        self.time_scale = time_scale
        n_in = 2 * in_channels + 4
        self.encode = nn.Sequential(
            nn.Conv2d(n_in, hidden, 3, padding=1, padding_mode="replicate"), nn.SiLU(),
            nn.Conv2d(hidden, hidden, 1), nn.SiLU(),
        )
        self.score = nn.Conv2d(hidden, 1, 1)
        self.value = nn.Conv2d(hidden, learned_features, 1)
        self.n_features = learned_features + in_channels + 2

    def forward(self, x: torch.Tensor, valid: torch.Tensor, dt: torch.Tensor | None = None,
                pad: torch.Tensor | None = None) -> TimeGateOutput:
        """x: (B,T,C,H,W) normalised reflectance; valid: (B,T,H,W) bool; dt: (B,T) days to target;
        pad: (B,T) bool, True for padding dates."""
        b, t, c, h, w = x.shape
        valid = valid.bool()
        if pad is not None:
            valid = valid & ~pad.bool()[:, :, None, None]
        x = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        vf = valid.to(x.dtype)[:, :, None]  # (B,T,1,H,W)
        n_valid = vf.sum(1)  # (B,1,H,W)
        mean = (x * vf).sum(1) / n_valid.clamp_min(1.0)
        dev = (x - mean[:, None]) * vf
        if dt is None:
            dt = torch.zeros(b, t, device=x.device, dtype=x.dtype)
        dtn = (dt.to(x.dtype) / self.time_scale)[:, :, None, None, None].expand(b, t, 1, h, w)
        frac = (vf.mean(dim=(3, 4), keepdim=True)).expand(b, t, 1, h, w)  # date-level clear fraction
        feats = torch.cat([x, dev, vf, dtn, dtn.abs(), frac], dim=2).reshape(b * t, -1, h, w)
        hdn = self.encode(feats)
        score = self.score(hdn).reshape(b, t, h, w).float()
        value = self.value(hdn).reshape(b, t, -1, h, w)
        score = score.masked_fill(~valid, float("-inf"))
        any_valid = valid.any(1, keepdim=True)  # (B,1,H,W)
        weights = torch.softmax(score, dim=1)
        weights = torch.where(any_valid, weights, torch.zeros_like(weights)).to(x.dtype)  # all-invalid pixels: 0
        wv = weights[:, :, None]
        composite = (wv * x).sum(1)
        spread = ((wv * (x - composite[:, None]) ** 2).sum(1) + 1e-6).sqrt()
        learned = (wv * value).sum(1)
        count = torch.log1p(n_valid)
        coverage = any_valid.to(x.dtype)
        features = torch.cat([learned, spread, count, coverage], dim=1)
        return TimeGateOutput(composite=composite, features=features, weights=weights, coverage=coverage)
