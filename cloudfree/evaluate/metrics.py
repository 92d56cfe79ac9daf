"""Image-quality metrics on masks: MSE, RMSE, MAE, PSNR, SSIM (primary), SAM.

One torch implementation serves numpy and torch inputs alike (numpy is converted), so training
validation and evaluation report the same numbers.

Conventions (stated once here):

* Images are (C, H, W) reflectance; ``mask`` (H, W) selects the pixels that count (valid target).
* ``data_range`` = 1.0 (reflectance units) unless given.
* SSIM: Gaussian window σ = 1.5 truncated at 3.5σ (11×11), K1 = 0.01, K2 = 0.03, population
  covariances — scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)``. The SSIM map is averaged over masked pixels at least 5 px from
  the image edge (skimage crops that border too).
* PSNR of identical images is ``inf`` (no cap); ``summarize`` keeps it as ``inf`` in JSON as ``null``.
* SAM: spectral angle per pixel in degrees, averaged over masked pixels.
"""

from __future__ import annotations

from ..errors import InputError

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["mse", "rmse", "mae", "psnr", "ssim", "ssim_map", "sam", "all_metrics", "per_band"]

_SIGMA, _RADIUS, _K1, _K2 = 1.5, 5, 0.01, 0.03


def _t(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    return torch.from_numpy(np.ascontiguousarray(a))


def _prep(pred, target, mask):
    p, t = _t(pred).double(), _t(target).double()
    if p.shape != t.shape:
        raise InputError(f"shapes differ: {tuple(p.shape)} vs {tuple(t.shape)}")
    if p.ndim == 2:
        p, t = p[None], t[None]
    m = torch.ones(p.shape[-2:], dtype=torch.bool, device=p.device) if mask is None else _t(mask).bool().to(p.device)
    m = m & torch.isfinite(p).all(0) & torch.isfinite(t).all(0)
    return p, t, m


def _gauss(device) -> torch.Tensor:
    x = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(x**2) / (2 * _SIGMA**2))
    return g / g.sum()


def ssim_map(pred, target, data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM (..., C, H, W) with the conventions above; differentiable; any float dtype."""
    p, t = _t(pred), _t(target)
    squeeze = p.ndim == 3
    if squeeze:
        p, t = p[None], t[None]
    b, c, h, w = p.shape
    g = _gauss(p.device).to(p.dtype)
    kx = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def filt(z):
        z = F.pad(z, (_RADIUS, _RADIUS, _RADIUS, _RADIUS), mode="reflect")
        return F.conv2d(F.conv2d(z, kx, groups=c), ky, groups=c)

    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    mu_p, mu_t = filt(p), filt(t)
    vp = filt(p * p) - mu_p**2
    vt = filt(t * t) - mu_t**2
    cov = filt(p * t) - mu_p * mu_t
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (vp + vt + c2))
    return s[0] if squeeze else s


def _masked_mean(v: torch.Tensor, m: torch.Tensor) -> float:
    n = int(m.sum())
    return float("nan") if n == 0 else float(v[..., m].mean())


def mse(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    return _masked_mean((p - t) ** 2, m)


def rmse(pred, target, mask=None) -> float:
    return math.sqrt(mse(pred, target, mask))


def mae(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    return _masked_mean((p - t).abs(), m)


def psnr(pred, target, mask=None, data_range: float = 1.0) -> float:
    e = mse(pred, target, mask)
    if e == 0:
        return float("inf")
    return 10 * math.log10(data_range**2 / e)


def ssim(pred, target, mask=None, data_range: float = 1.0) -> float:
    p, t, m = _prep(pred, target, mask)
    p, t = torch.nan_to_num(p), torch.nan_to_num(t)
    s = ssim_map(p, t, data_range)
    inner = torch.zeros_like(m)
    inner[_RADIUS:-_RADIUS, _RADIUS:-_RADIUS] = True
    return _masked_mean(s, m & inner)


def sam(pred, target, mask=None) -> float:
    p, t, m = _prep(pred, target, mask)
    dot = (p * t).sum(0)
    norm = p.norm(dim=0) * t.norm(dim=0)
    ang = torch.rad2deg(torch.arccos((dot / norm.clamp_min(1e-12)).clamp(-1, 1)))
    return _masked_mean(ang, m)


def all_metrics(pred, target, mask=None, data_range: float = 1.0) -> dict[str, float]:
    """Every metric over all bands at once."""
    e = mse(pred, target, mask)
    return {"mse": e, "rmse": math.sqrt(e) if e == e else e, "mae": mae(pred, target, mask),
            "psnr": float("inf") if e == 0 else 10 * math.log10(data_range**2 / e),
            "ssim": ssim(pred, target, mask, data_range), "sam": sam(pred, target, mask)}


def per_band(pred, target, bands: list[str], mask=None, data_range: float = 1.0) -> dict[str, dict[str, float]]:
    """MSE/MAE/PSNR/SSIM for each band separately."""
    out = {}
    for i, b in enumerate(bands):
        p, t = _t(pred)[i : i + 1], _t(target)[i : i + 1]
        e = mse(p, t, mask)
        out[b] = {"mse": e, "mae": mae(p, t, mask), "psnr": float("inf") if e == 0 else 10 * math.log10(data_range**2 / e),
                  "ssim": ssim(p, t, mask, data_range)}
    return out
