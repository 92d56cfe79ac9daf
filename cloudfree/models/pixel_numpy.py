"""The default model, PixelTimeGate, in numpy: inference on the CPU without PyTorch.

Why: the core install (``pip install cloudfree``) has no torch. The default model is small and
per pixel, so numpy runs it at the CPU's pace without a several-GiB GPU stack. This is the same
network as :class:`~cloudfree.models.pixel.PixelTimeGate` (forward only), step for step in
float32, read from the same checkpoint; ``tests/test_core_install.py`` holds the two equal within
1e-5 on real series. Training, the GPU path and the other architectures need the ``[gpu]`` extra.
"""

from __future__ import annotations

import numpy as np

from ..bands import L2A_BANDS
from .pixel_features import EDGE_CAP, N_SLOTS

__all__ = ["NumpyPixelTimeGate", "interp_weights_np", "apply_departure_np"]

_F = np.float32


def _silu(v: np.ndarray) -> np.ndarray:
    """x · sigmoid(x), with one temporary (the hidden layers are the forward's largest arrays)."""
    e = np.negative(v)
    np.exp(e, out=e)
    e += _F(1)
    return np.divide(v, e, out=e)


def _masked_median(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median over axis 1 of x (B,T,C,N) where valid (B,T,1,N); 0 where no valid date."""
    big = _F(np.finfo(np.float32).max / 4)
    n = valid.sum(1, keepdims=True)  # (B,1,1,N)
    xs = np.sort(np.where(valid, x, big), axis=1)
    shape = (x.shape[0], 1, x.shape[2], x.shape[3])
    lo = np.broadcast_to(np.maximum(n - 1, 0) // 2, shape)
    hi = np.broadcast_to(np.minimum(n // 2, x.shape[1] - 1), shape)
    med = _F(0.5) * (np.take_along_axis(xs, lo, 1) + np.take_along_axis(xs, hi, 1))
    return np.where(n > 0, med, _F(0))[:, 0]


def interp_weights_np(dt: np.ndarray, v: np.ndarray) -> np.ndarray:
    """:func:`~cloudfree.models.pixel.interp_weights` in numpy: (B,T) dt, (B,T,1,N) v → (B,T,1,N)."""
    b, t, _, n = v.shape
    d = np.broadcast_to(dt.astype(_F).reshape(b, t, 1, 1), (b, t, 1, n))
    before = np.where(v & (d <= 0), -d, _F(np.inf))
    after = np.where(v & (d > 0), d, _F(np.inf))
    ib, ia = before.argmin(1)[:, None], after.argmin(1)[:, None]
    db, da = np.take_along_axis(before, ib, 1), np.take_along_axis(after, ia, 1)
    hb, ha = np.isfinite(db), np.isfinite(da)
    both = hb & ha
    span = np.where(both, db + da, _F(1))
    wb = np.where(both, da / np.maximum(span, _F(1e-6)), hb.astype(_F))
    wa = np.where(both, db / np.maximum(span, _F(1e-6)), ha.astype(_F))
    k = np.arange(t).reshape(1, t, 1, 1)
    return (np.where(k == ib, np.where(hb, wb, _F(0)), _F(0)) + np.where(k == ia, np.where(ha, wa, _F(0)), _F(0))).astype(_F)


def _box(v: np.ndarray, k: int) -> np.ndarray:
    """(C, H, W) → (C, H − k + 1, W − k + 1): the mean over each k × k window (valid windows only)."""
    c = np.pad(v.astype(np.float64), ((0, 0), (1, 0), (1, 0))).cumsum(1).cumsum(2)
    s = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
    return (s / (k * k)).astype(_F)


def apply_departure_np(est: np.ndarray, temporal: np.ndarray, kept: np.ndarray, radius: int, gain: float,
                       min_fraction: float = 0.05) -> np.ndarray:
    """:func:`~cloudfree.models.pixel.apply_departure` in numpy: (C, H, W) in, (C, H − 2r, W − 2r) out."""
    r, k = radius, 2 * radius + 1
    a, b, frac = _box(est * kept, k), _box(temporal * kept, k), _box(kept, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((frac >= min_fraction) & (b > 1e-3), a / np.maximum(b, _F(1e-6)), _F(1)).clip(0.5, 2.0)
    core = est[:, r : est.shape[1] - r, r : est.shape[2] - r]
    kc = kept[:, r : kept.shape[1] - r, r : kept.shape[2] - r]
    return np.where(kc > 0, core, core * ratio.astype(_F) ** _F(gain)).astype(_F)


class NumpyPixelTimeGate:
    """The forward pass of :class:`~cloudfree.models.pixel.PixelTimeGate` on numpy arrays: the same
    call (``x`` (B,T,C,H,W), ``valid`` (B,T,H,W), ``dt`` (B,T), ``bands``, ``aux`` (B,T,3,H,W)) and
    the same outputs (``output``, ``temporal``, ``kept``, ``weights``, ``coverage``)."""

    receptive_field = 0
    band_aware = True

    def __init__(self, state: dict[str, np.ndarray], mean: list[float], std: list[float], hidden: int = 64,
                 learned: int = 0, time_scale: float = 60.0, pass_through: bool = True, pass_z: float = 4.0,
                 pass_edge: float = 3.0, gamma_init: float = 0.0, departure: dict | None = None):
        self.w = {k: np.asarray(v, _F) for k, v in state.items()}
        self.mean, self.std = self.w["mean"], self.w["std"]
        self.time_scale, self.pass_through, self.pass_z, self.pass_edge = time_scale, pass_through, pass_z, pass_edge
        self.departure = dict(departure) if departure else None

    def eval(self) -> "NumpyPixelTimeGate":
        return self

    def to(self, device: str) -> "NumpyPixelTimeGate":
        if str(device) != "cpu":
            from ..errors import InputError

            raise InputError(f"device {device!r} needs PyTorch: pip install 'cloudfree[gpu]'")
        return self

    def _linear(self, name: str, v: np.ndarray) -> np.ndarray:
        return v @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def __call__(self, x, valid, dt=None, pad=None, bands=None, aux=None) -> dict[str, np.ndarray]:
        b, t, c, h, w = x.shape
        n = h * w
        idx = np.array([L2A_BANDS.index(str(s)) for s in (bands if bands is not None else L2A_BANDS)])
        fin = np.isfinite(x).all(2)
        xs = np.zeros((b, t, N_SLOTS, n), _F)
        xs[:, :, idx] = np.nan_to_num(x.astype(_F)).reshape(b, t, c, n)
        pres = np.zeros((b, N_SLOTS), _F)
        pres[:, idx] = 1.0
        valid = np.asarray(valid, bool) & fin
        if pad is not None:
            valid = valid & ~np.asarray(pad, bool)[:, :, None, None]
        dt = np.zeros((b, t), _F) if dt is None else np.asarray(dt, _F).reshape(b, t)
        if aux is None:
            aux = np.ones((b, t, 3, h, w), _F)
            aux[:, :, 2] = EDGE_CAP
        p4 = pres.reshape(b, 1, N_SLOTS, 1)
        v = valid.reshape(b, t, 1, n)
        xn = ((xs - self.mean.reshape(1, 1, -1, 1)) / self.std.reshape(1, 1, -1, 1)) * p4 * v
        med = _masked_median(xn, v)
        f = self._evidence(xn, med, v, p4, pres, dt, np.asarray(aux, _F))
        wts, wmed, any_valid = self._weights(f, v, t)
        out_n = (wts[:, :, None] * xn).sum(1) + wmed * med
        temporal = out_n * self.std.reshape(1, -1, 1) + self.mean.reshape(1, -1, 1)
        out, has = self._pass_through(temporal, xs, f, any_valid)
        out = np.where(any_valid, out, _F(0))
        return {"output": out[:, idx].reshape(b, c, h, w), "temporal": temporal.reshape(b, N_SLOTS, h, w)[:, idx],
                "weights": wts.reshape(b, t, h, w), "coverage": any_valid.astype(_F).reshape(b, 1, h, w),
                "kept": has.astype(_F).reshape(b, 1, h, w)}

    def _evidence(self, xn, med, v, p4, pres, dt, aux) -> dict[str, np.ndarray]:
        b, t, _, n = v.shape
        mad = _masked_median(np.abs(xn - med[:, None]), v)
        z = np.clip((xn - med[:, None]) / (mad[:, None] + _F(0.1)), -10, 10) * p4 * v
        npres = p4.sum(2, keepdims=True)
        zabs = (np.abs(z) * p4).sum(2, keepdims=True) / npres
        first = pres.argmax(1)
        zblue = np.take_along_axis(z, np.broadcast_to(first.reshape(b, 1, 1, 1), (b, t, 1, n)), 2)
        vf = v.astype(_F)
        dtn = np.broadcast_to((dt / _F(self.time_scale)).reshape(b, t, 1, 1), (b, t, 1, n))
        adt = np.broadcast_to(np.abs(dt).reshape(b, t, 1, 1), (b, t, 1, n))
        interp = interp_weights_np(dt, v)
        is_target = (adt < 0.5).astype(_F) * vf
        outl = (np.abs(z) > 3).astype(_F).sum(2, keepdims=True) / npres
        near_frac = aux[:, :, 0:1].reshape(b, t, 1, n)
        frac = aux[:, :, 1:2].reshape(b, t, 1, n)
        edge = np.clip(aux[:, :, 2:3].reshape(b, t, 1, n) / _F(EDGE_CAP), 0, 1)
        feats = np.concatenate([z, np.broadcast_to(p4, (b, t, N_SLOTS, n)), vf, dtn, np.abs(dtn), np.exp(-adt / _F(15.0)),
                                np.exp(-adt / _F(60.0)), interp, zabs, zblue, outl, is_target, frac, near_frac, edge,
                                (edge <= _F(2.0 / EDGE_CAP)).astype(_F)], axis=2).astype(_F)
        return {"feats": feats, "interp": interp, "zabs": zabs, "vf": vf, "adt": adt, "is_target": is_target,
                "outl": outl, "edge": edge, "nval": vf.sum(1, keepdims=True)}

    def _weights(self, f: dict, v: np.ndarray, t: int):
        hdn = _silu(self._linear("date_net.2", _silu(self._linear("date_net.0", f["feats"].transpose(0, 1, 3, 2)))))
        score = self._linear("score", hdn)[..., 0] + self.w["interp_gain"] * np.log(f["interp"][:, :, 0] + _F(1e-3))
        score = np.where(v[:, :, 0], score, _F(-np.inf))
        any_valid = v[:, :, 0].any(1, keepdims=True)
        vf, nval, adt = f["vf"][:, :, 0], f["nval"][:, 0, 0], f["adt"][:, :, 0]
        den = np.maximum(nval, _F(1))
        mean_zabs = (f["zabs"][:, :, 0] * vf).sum(1) / den
        near = np.where(v[:, :, 0], adt, _F(1e3)).min(1)
        pix = np.stack([np.log1p(nval), mean_zabs, f["is_target"].max(1)[:, 0], np.exp(-near / _F(15.0)),
                        (f["outl"][:, :, 0] * vf).sum(1) / den], -1).astype(_F)
        med_score = self._linear("median_net.2", _silu(self._linear("median_net.0", pix)))[..., 0][:, None]
        med_score = np.where(any_valid, med_score, _F(-np.inf))
        s = np.concatenate([score, med_score], 1)
        with np.errstate(invalid="ignore"):
            e = np.exp(s - s.max(1, keepdims=True))
            allw = e / e.sum(1, keepdims=True)
        allw = np.where(any_valid, allw, _F(0)).astype(_F)
        return allw[:, :t], allw[:, t:], any_valid

    def _pass_through(self, out, xs, f: dict, any_valid):
        if not self.pass_through:
            return out, np.zeros_like(any_valid[:, 0])
        tgt = (f["is_target"] * (f["zabs"] <= self.pass_z) * (f["edge"] > _F(self.pass_edge / EDGE_CAP)))[:, :, 0]
        has = tgt.any(1)
        ti = tgt.argmax(1)
        own = np.take_along_axis(xs, np.broadcast_to(ti[:, None, None, :], (xs.shape[0], 1, N_SLOTS, xs.shape[3])), 1)[:, 0]
        return np.where(has[:, None], own, out), has
