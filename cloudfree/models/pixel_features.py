"""The per-date context features of the per-pixel models, in numpy (no torch: the core install
runs the default model without it): usable fractions around each pixel and the distance to the
nearest unusable pixel, plus the constants the tile functions size their margins by."""

from __future__ import annotations

import numpy as np

from ..bands import L2A_BANDS

__all__ = ["N_SLOTS", "EDGE_CAP", "LOCAL_RADII", "CONTEXT", "local_fraction", "cloud_distance", "context_features"]

N_SLOTS = len(L2A_BANDS)
EDGE_CAP = 8
"""Distances to the nearest unusable pixel are capped here (pixels)."""
LOCAL_RADII = (7, 31)
"""Half-widths (pixels) of the windows whose usable fraction describes a date around a pixel."""
CONTEXT = max(EDGE_CAP, *LOCAL_RADII)
"""The margin (pixels) the per-date context features need: blocks read this much around them."""


def local_fraction(usable, r: int):
    """(…, H, W) bool → float32 usable fraction in the (2r+1)² window around each pixel; outside the
    array counts as usable (the same convention at image edges, block edges and in training)."""
    u = np.asarray(usable, bool)
    pad = [(0, 0)] * (u.ndim - 2) + [(r + 1, r), (r + 1, r)]
    c = np.pad(u.astype(np.float64), pad, constant_values=1.0).cumsum(-2).cumsum(-1)
    k = 2 * r + 1
    s = c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]
    return (s / k**2).astype(np.float32)


def cloud_distance(usable, cap: int = EDGE_CAP):
    """(…, H, W) bool usable → uint8 chessboard distance to the nearest unusable pixel, capped."""
    u = np.asarray(usable, bool)
    out = np.full(u.shape, cap, np.uint8)
    flat = u.reshape(-1, *u.shape[-2:])
    res = out.reshape(-1, *u.shape[-2:])
    for i, m in enumerate(flat):
        if m.all():
            continue
        d = np.zeros(m.shape, np.int32)  # iterative chessboard dilation: numpy only, cap steps
        cur = ~m
        for k in range(1, cap + 1):
            nxt = cur.copy()
            nxt[1:] |= cur[:-1]
            nxt[:-1] |= cur[1:]
            nxt[:, 1:] |= cur[:, :-1]
            nxt[:, :-1] |= cur[:, 1:]
            nxt[1:, 1:] |= cur[:-1, :-1]
            nxt[:-1, :-1] |= cur[1:, 1:]
            nxt[1:, :-1] |= cur[:-1, 1:]
            nxt[:-1, 1:] |= cur[1:, :-1]
            d[nxt & ~cur] = k
            cur = nxt
        d[~m] = 0
        d[~cur] = cap
        res[i] = np.minimum(d, cap)
    return out


def context_features(usable, margin: int = 0):
    """(T, H, W) usable → (T, 3, H - 2m, W - 2m) float32: usable fraction within 7 and 31 px and the
    capped distance to the nearest unusable pixel, for the core of an array with margin ``m``."""
    u = np.asarray(usable, bool)
    h, w = u.shape[-2] - 2 * margin, u.shape[-1] - 2 * margin
    core = (slice(None), slice(margin, margin + h), slice(margin, margin + w))
    return np.stack([local_fraction(u, LOCAL_RADII[0])[core], local_fraction(u, LOCAL_RADII[1])[core],
                     cloud_distance(u)[core].astype(np.float32)], 1)
