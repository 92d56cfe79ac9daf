"""PixelTimeGate: a band-aware, per-pixel temporal model for real series.

Why per pixel: no statistic over a patch or tile enters the network, so a pixel's output is the
same for any patch size and tiling; the tile function reads only a margin (context features, the
target date's departure), no patch halo. Why these features: on real series the
errors come from observations SCL calls clear although they are cloud, haze, shadow or cloud edge;
such an observation disagrees with the rest of the pixel's series, which robust statistics (median,
MAD over time) expose without being dragged by it. The date scores start from linear
interpolation's weights (a learnable multiple of their log) so the network prefers near dates the
way interpolation does and learns when to depart from it.

Band-aware: every input lives in the 12 L2A band slots (B01…B12); bands the cube lacks are zero with
a presence flag, and training drops bands at random, so one checkpoint serves 12, 10, 6, 4 or 2 bands.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..bands import L2A_BANDS
from .pixel_features import CONTEXT, EDGE_CAP, LOCAL_RADII, N_SLOTS, cloud_distance, context_features, local_fraction

__all__ = ["PixelTimeGate", "BoundBands", "apply_departure", "N_SLOTS", "EDGE_CAP", "LOCAL_RADII", "CONTEXT", "cloud_distance",
           "local_fraction", "context_features"]

def sorted_values(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.sort(x, dim).values``; on the CPU, for data that needs no gradient, numpy's sort (the
    same values, about twice as fast for the short time axes sorted here)."""
    if x.device.type == "cpu" and not x.requires_grad:
        return torch.from_numpy(np.sort(x.numpy(), axis=dim))
    return x.sort(dim=dim).values


def _masked_median(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Median over dim 1 of x (B,T,C,N) where valid (B,T,1,N); 0 where no valid date."""
    big = torch.finfo(x.dtype).max / 4
    n = valid.sum(1, keepdim=True)  # (B,1,1,N)
    # push invalid entries to the top, sort, pick the middle of the valid ones
    xs = sorted_values(torch.where(valid, x, torch.full_like(x, big)), 1)
    lo = ((n - 1).clamp_min(0) // 2).long().expand(-1, 1, x.shape[2], -1)
    hi = (n // 2).clamp_max(x.shape[1] - 1).long().expand(-1, 1, x.shape[2], -1)
    med = 0.5 * (xs.gather(1, lo) + xs.gather(1, hi))
    return torch.where(n > 0, med, torch.zeros_like(med))[:, 0]


class PixelTimeGate(nn.Module):
    """Series of one pixel in, one value per band out; see the module docstring.

    ``forward(x, valid, dt, pad=None, bands=None)``: x (B,T,C,H,W) reflectance in the order of
    ``bands`` (default: the 12 L2A bands; NaN allowed where invalid), valid (B,T,H,W), dt (B,T)
    days to the target. Returns ``output`` (B,C,H,W), ``weights`` (B,T,H,W), ``coverage`` and
    ``kept`` (B,1,H,W): 1 where the target's own observation passed through unchanged, and
    ``temporal``: the temporal estimate before that pass-through.
    """

    receptive_field = 0
    band_aware = True

    def __init__(self, mean: list[float], std: list[float], hidden: int = 64, learned: int = 0, time_scale: float = 60.0,
                 pass_through: bool = True, pass_z: float = 4.0, pass_edge: float = 3.0, gamma_init: float = 0.0,
                 departure: dict | None = None):
        super().__init__()
        self.departure = dict(departure) if departure else None
        """``{"radius", "gain", "min_fraction"}``: the tile function scales the estimate by the target
        date's local departure from it (see :func:`apply_departure`); ``None``: off."""
        self.time_scale = time_scale
        self.pass_through = pass_through
        self.pass_z = pass_z
        self.pass_edge = pass_edge
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        # Only relative, generic evidence enters the scores (robust z, time, validity): absolute
        # values would let a network fitted on a few real places memorise them.
        n_date = 2 * N_SLOTS + 14
        self.date_net = nn.Sequential(nn.Linear(n_date, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.score = nn.Linear(hidden, 1)
        self.interp_gain = nn.Parameter(torch.tensor(1.0))
        # the pixel's robust temporal median competes with the dates as one more candidate
        self.median_net = nn.Sequential(nn.Linear(5, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.median_net[-1].weight)
        nn.init.constant_(self.median_net[-1].bias, -2.0)

    @staticmethod
    def slots(bands) -> torch.Tensor:
        """Indices of ``bands`` among the 12 slots."""
        return torch.tensor([L2A_BANDS.index(str(b)) for b in bands], dtype=torch.long)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, dt: torch.Tensor | None = None, pad: torch.Tensor | None = None,
                bands=None, present: torch.Tensor | None = None, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``present`` (B,12): x is already in the 12 slots with these bands present (training);
        otherwise x holds ``bands`` (default all 12) in that order. ``aux`` (B,T,3,H,W), from
        :func:`context_features`: per date the usable fraction in windows of 15 and 63 px around
        the pixel and the distance to the nearest unusable pixel (capped at :data:`EDGE_CAP`: SCL
        misses cloud edges). Computed over the whole image with a margin, so tiling-invariant."""
        b, t, c, h, w = x.shape
        xs, pres, idx, valid = self._in_slots(x, valid, bands, present, pad)
        if dt is None:
            dt = torch.zeros(b, t, device=x.device)
        if aux is None:
            aux = torch.ones(b, t, 3, h, w, device=x.device)
            aux[:, :, 2] = EDGE_CAP
        p4 = pres.view(b, 1, N_SLOTS, 1)
        v = valid.reshape(b, t, 1, h * w)
        xn = ((xs - self.mean.view(1, 1, -1, 1)) / self.std.view(1, 1, -1, 1)) * p4 * v
        med = _masked_median(xn, v)  # (B,12,N)
        f = self._evidence(xn, med, v, p4, pres, dt, aux)
        wts, wmed, any_valid = self._weights(f, v, t)
        out_n = (wts[:, :, None] * xn).sum(1) + wmed * med  # (B,12,N)
        temporal = out_n * self.std.view(1, -1, 1) + self.mean.view(1, -1, 1)
        out, has = self._pass_through(temporal, xs, f, any_valid)
        out = torch.where(any_valid, out, torch.zeros_like(out))
        kept = has.float().reshape(b, 1, h, w)
        temporal = temporal.reshape(b, N_SLOTS, h, w)  # a view: no work on the hot path (callers weigh it by kept)
        res = {"weights": wts.reshape(b, t, h, w), "coverage": any_valid.float().reshape(b, 1, h, w), "kept": kept}
        if idx is not None:
            return {"output": out[:, idx].reshape(b, c, h, w), "temporal": temporal[:, idx], **res}
        return {"output": out.reshape(b, N_SLOTS, h, w), "temporal": temporal, **res}

    def _in_slots(self, x, valid, bands, present, pad):
        """``(xs (B,T,12,N), present (B,12), band slots or None, valid (B,T,H,W))``: the bands in
        their wavelength slots, absent ones zero; a date is valid only where all its bands are finite."""
        b, t, c, h, w = x.shape
        n, dev = h * w, x.device
        if present is None:
            idx = self.slots(bands if bands is not None else L2A_BANDS).to(dev)
            fin = torch.isfinite(x).all(2)
            xs = torch.zeros(b, t, N_SLOTS, n, device=dev, dtype=torch.float32)
            xs[:, :, idx] = torch.nan_to_num(x.float()).reshape(b, t, c, n)
            pres = torch.zeros(b, N_SLOTS, device=dev)
            pres[:, idx] = 1.0
        else:
            idx = None
            pres = present.float().to(dev)
            fin = (torch.isfinite(x) | (pres[:, None, :, None, None] == 0)).all(2)
            xs = torch.nan_to_num(x.float()).reshape(b, t, N_SLOTS, n) * pres[:, None, :, None]
        valid = valid.bool() & fin
        if pad is not None:
            valid = valid & ~pad.bool()[:, :, None, None]
        return xs, pres, idx, valid

    def _evidence(self, xn, med, v, p4, pres, dt, aux) -> dict[str, torch.Tensor]:
        """Per date and pixel, what the date network weighs: robust z against the pixel's series,
        time gaps, interpolation weights, the target flag, and the context features of ``aux``."""
        b, t, _, n = v.shape
        mad = _masked_median((xn - med[:, None]).abs(), v)
        z = ((xn - med[:, None]) / (mad[:, None] + 0.1)).clamp(-10, 10) * p4 * v
        zabs = (z.abs() * p4).sum(2, keepdim=True) / p4.sum(2, keepdim=True)
        first = pres.argmax(1)  # the bluest present band (slots are in wavelength order)
        zblue = z.gather(2, first.view(b, 1, 1, 1).expand(b, t, 1, n))
        vf = v.float()
        dtn = (dt.float() / self.time_scale).view(b, t, 1, 1).expand(b, t, 1, n)
        adt = dt.float().abs().view(b, t, 1, 1).expand(b, t, 1, n)
        interp = interp_weights(dt.float(), v)  # (B,T,1,N)
        is_target = (adt < 0.5).float() * vf
        outl = (z.abs() > 3).float().sum(2, keepdim=True) / p4.sum(2, keepdim=True)
        near_frac = aux[:, :, 0:1].float().reshape(b, t, 1, n)
        frac = aux[:, :, 1:2].float().reshape(b, t, 1, n)
        edge = (aux[:, :, 2:3].float().reshape(b, t, 1, n) / EDGE_CAP).clamp(0, 1)
        feats = torch.cat([z, p4.expand(b, t, -1, n), vf, dtn, dtn.abs(), torch.exp(-adt / 15.0), torch.exp(-adt / 60.0),
                           interp, zabs, zblue, outl, is_target, frac, near_frac, edge,
                           (edge <= 2.0 / EDGE_CAP).float()], dim=2)
        return {"feats": feats, "interp": interp, "zabs": zabs, "vf": vf, "adt": adt, "is_target": is_target,
                "outl": outl, "edge": edge, "nval": vf.sum(1, keepdim=True)}

    def _weights(self, f: dict, v: torch.Tensor, t: int):
        """``(date weights (B,T,N), the median's weight (B,1,N), any valid date (B,1,N))``: one
        softmax over the dates' scores and the median candidate's."""
        hdn = self.date_net(f["feats"].permute(0, 1, 3, 2))  # (B,T,N,H)
        score = self.score(hdn)[..., 0] + self.interp_gain * torch.log(f["interp"][:, :, 0] + 1e-3)  # (B,T,N)
        score = score.masked_fill(~v[:, :, 0], float("-inf"))
        any_valid = v[:, :, 0].any(1, keepdim=True)  # (B,1,N)
        # pixel-level evidence for the median candidate
        vf, nval, adt = f["vf"], f["nval"], f["adt"]
        mean_zabs = (f["zabs"][:, :, 0] * vf[:, :, 0]).sum(1) / nval[:, 0, 0].clamp_min(1)
        near = torch.where(v[:, :, 0], adt[:, :, 0], torch.full_like(adt[:, :, 0], 1e3)).min(1).values
        pix = torch.stack([torch.log1p(nval[:, 0, 0]), mean_zabs, f["is_target"].amax(1)[:, 0], torch.exp(-near / 15.0),
                           (f["outl"][:, :, 0] * vf[:, :, 0]).sum(1) / nval[:, 0, 0].clamp_min(1)], -1)  # (B,N,5)
        med_score = self.median_net(pix)[..., 0][:, None]  # (B,1,N)
        med_score = med_score.masked_fill(~any_valid, float("-inf"))
        allw = torch.softmax(torch.cat([score, med_score], 1), dim=1)
        allw = torch.where(any_valid, allw, torch.zeros_like(allw))
        return allw[:, :t], allw[:, t:], any_valid

    def _pass_through(self, out, xs, f: dict, any_valid):
        """``(output, kept (B,N))``: the target's own clear observation kept unchanged, unless it
        disagrees with the pixel's series beyond ``pass_z`` robust z (haze SCL called clear) or
        lies within ``pass_edge`` pixels of a flagged cloud or shadow (edges SCL leaves out)."""
        if not self.pass_through:
            return out, torch.zeros_like(any_valid[:, 0])
        tgt = (f["is_target"] * (f["zabs"] <= self.pass_z).float() * (f["edge"] > self.pass_edge / EDGE_CAP).float())[:, :, 0]
        has = tgt.any(1)
        ti = tgt.argmax(1)  # (B,N)
        own = xs.gather(1, ti[:, None, None, :].expand(-1, 1, N_SLOTS, -1))[:, 0]
        return torch.where(has[:, None], own, out), has


def interp_weights(dt: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Linear interpolation's weight of each date per pixel: the nearest valid date before and after
    the target share 1 by distance; one side only → 1 on the nearest; (B,T) dt, (B,T,1,N) v."""
    b, t, _, n = v.shape
    d = dt.view(b, t, 1, 1).expand(b, t, 1, n)
    inf = torch.full_like(d, float("inf"))
    before = torch.where(v & (d <= 0), -d, inf)
    after = torch.where(v & (d > 0), d, inf)
    db, ib = before.min(1, keepdim=True)
    da, ia = after.min(1, keepdim=True)
    hb, ha = torch.isfinite(db), torch.isfinite(da)
    span = torch.where(hb & ha, db + da, torch.ones_like(db))
    wb = torch.where(hb & ha, da / span.clamp_min(1e-6), hb.float())
    wa = torch.where(hb & ha, db / span.clamp_min(1e-6), ha.float())
    out = torch.zeros_like(d)
    out.scatter_add_(1, ib, torch.where(hb, wb, torch.zeros_like(wb)))
    out.scatter_add_(1, ia, torch.where(ha, wa, torch.zeros_like(wa)))
    return out


class BoundBands(nn.Module):
    """A band-aware model with its band list fixed, for callers that pass (x, valid, dt, pad) only."""

    def __init__(self, model: nn.Module, bands) -> None:
        super().__init__()
        self.model = model
        self.bands = [str(b) for b in bands]

    def forward(self, x, valid, dt=None, pad=None):
        return self.model(x, valid, dt, pad, bands=self.bands)


def context_features_torch(usable: "torch.Tensor", margin: int = 0) -> "torch.Tensor":
    """:func:`context_features` on the device the mask lives on (the GPU path: no host round trip).
    (T, H, W) bool → (T, 3, H - 2m, W - 2m) float32, equal to the numpy version."""
    import torch.nn.functional as F

    u = usable.bool()
    t, hh, ww = u.shape
    h, w = hh - 2 * margin, ww - 2 * margin
    feats = []
    for r in LOCAL_RADII:  # windowed sums from integer cumulative sums: exact, any size
        k = 2 * r + 1
        c = F.pad(u.to(torch.int32), (r + 1, r, r + 1, r), value=1).cumsum(-2).cumsum(-1)
        s = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
        feats.append((s.float() / float(k * k))[:, margin : margin + h, margin : margin + w])
    # chessboard distance to the nearest unusable pixel, capped: repeated 3x3 max-pool dilation
    cur = (~u).float()[:, None]
    dist = torch.full((t, 1, hh, ww), float(EDGE_CAP), device=u.device)
    dist = torch.where(cur > 0, torch.zeros_like(dist), dist)
    for k in range(1, EDGE_CAP):
        nxt = F.max_pool2d(cur, 3, stride=1, padding=1)
        dist = torch.where((nxt > 0) & (cur == 0), torch.full_like(dist, float(k)), dist)
        cur = nxt
    feats.append(dist[:, 0, margin : margin + h, margin : margin + w])
    return torch.stack(feats, 1)


def apply_departure(est: "torch.Tensor", temporal: "torch.Tensor", kept: "torch.Tensor", radius: int, gain: float,
                    min_fraction: float = 0.05) -> "torch.Tensor":
    """Where the target date was observed, its observation departs from the temporal estimate
    (haze, view angle, a gain of the whole date); where it was not, the estimate is scaled by that
    departure measured around the pixel: per band, ratio = Σ observed / Σ temporal estimate over
    the kept pixels within ``radius`` (clamped to 0.5–2), applied as ratio ** ``gain``.

    est, temporal (C, H, W) and kept (1, H, W) cover the output plus ``radius`` on every side (the
    tile function runs the model over that margin), so the result — (C, H − 2r, W − 2r) — is the
    same for any tiling. Chosen on validation (the model card): radius 16, gain 0.75."""
    import torch.nn.functional as F

    r, k = radius, 2 * radius + 1

    def box(v):  # separable window mean: 2k operations per pixel instead of k²
        return F.avg_pool2d(F.avg_pool2d(v[None], (k, 1), stride=1), (1, k), stride=1)[0]

    a, b, frac = box(est * kept), box(temporal * kept), box(kept)
    ratio = torch.where((frac >= min_fraction) & (b > 1e-3), a / b.clamp_min(1e-6), torch.ones_like(a)).clamp(0.5, 2.0)
    core = est[:, r : est.shape[1] - r, r : est.shape[2] - r]
    kc = kept[:, r : kept.shape[1] - r, r : kept.shape[2] - r]
    return torch.where(kc > 0, core, core * ratio**gain)
