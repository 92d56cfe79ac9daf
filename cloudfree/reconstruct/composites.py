"""Classical compositing baselines, on the same inputs as the model.

Each core function takes a series ``x`` (T, C, H, W) reflectance (NaN = no data), ``clear``
(T, H, W) bool and ``days`` (T,) acquisition days, plus the target day, and returns the image
(C, H, W) with NaN where it has nothing to offer. :func:`composite` wraps them for lazy Dask
xarray cubes via ``apply_ufunc``, so ``cloudfree run --method median`` uses the same code.
"""

from __future__ import annotations

from ..errors import InputError

import warnings

import numpy as np

__all__ = ["least_cloudy", "least_cloudy_date", "mosaicking", "median_composite", "interpolation", "METHODS", "composite"]


def _clear(x: np.ndarray, clear: np.ndarray) -> np.ndarray:
    return clear.astype(bool) & np.isfinite(x).all(1)


def least_cloudy_date(usable_fraction: np.ndarray, days: np.ndarray, target_day: float) -> int:
    """Index of the date with the most usable pixels (ties: nearest the target)."""
    return int(np.lexsort((np.abs(np.asarray(days, float) - target_day), -np.asarray(usable_fraction)))[0])


def least_cloudy(x: np.ndarray, clear: np.ndarray, days: np.ndarray, target_day: float) -> np.ndarray:
    """The whole image of the date with the most clear pixels (ties: nearest the target)."""
    c = _clear(x, clear)
    return x[least_cloudy_date(c.reshape(len(c), -1).mean(1), days, target_day)].copy()


def mosaicking(x: np.ndarray, clear: np.ndarray, days: np.ndarray, target_day: float) -> np.ndarray:
    """Per pixel: the clear observation nearest in time; where none, the mean of all observations."""
    c = _clear(x, clear)
    dist = np.abs(np.asarray(days, float) - target_day)[:, None, None] + np.where(c, 0.0, np.inf)
    best = np.argmin(dist, axis=0)  # (H, W)
    pick = np.take_along_axis(x, best[None, None].repeat(x.shape[1], 1), axis=0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fallback = np.nanmean(x, axis=0)
    return np.where(c.any(0)[None], pick, fallback).astype(x.dtype)


def median_composite(x: np.ndarray, clear: np.ndarray, days: np.ndarray, target_day: float) -> np.ndarray:
    """Per-pixel median of clear observations; where none, the median of all observations."""
    c = _clear(x, clear)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(np.where(c[:, None], x, np.nan), axis=0)
        fallback = np.nanmedian(x, axis=0)
    return np.where(c.any(0)[None], med, fallback).astype(x.dtype)


def interpolation(x: np.ndarray, clear: np.ndarray, days: np.ndarray, target_day: float) -> np.ndarray:
    """Linear interpolation in time between the nearest clear dates before and after the target;
    one side only → that observation; none → median of all observations."""
    c = _clear(x, clear)
    d = np.asarray(days, float)[:, None, None]
    before = np.where(c & (d <= target_day), target_day - d, np.inf)
    after = np.where(c & (d >= target_day), d - target_day, np.inf)
    ib, ia = before.argmin(0), after.argmin(0)
    has_b, has_a = np.isfinite(before.min(0)), np.isfinite(after.min(0))
    xb = np.take_along_axis(x, ib[None, None].repeat(x.shape[1], 1), 0)[0]
    xa = np.take_along_axis(x, ia[None, None].repeat(x.shape[1], 1), 0)[0]
    # weights in float32, as the block reads compute them on the device: one picture from both paths
    f32 = np.float32
    db, da = before.min(0).astype(f32), after.min(0).astype(f32)
    span = np.where(has_b & has_a, db + da, f32(1))
    wa = np.where(has_b & has_a, np.where(span > 0, db / np.where(span > 0, span, f32(1)), f32(0.5)), f32(0))
    both = (f32(1) - wa)[None] * xb.astype(f32) + wa[None] * xa.astype(f32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fallback = np.nanmedian(x, axis=0)
    out = np.where((has_b & has_a)[None], both, np.where(has_b[None], xb, np.where(has_a[None], xa, fallback)))
    return out.astype(x.dtype)


METHODS = {
    "least_cloudy": least_cloudy,
    "mosaicking": mosaicking,
    "median": median_composite,
    "interpolation": interpolation,
}


COMPOSITE_TASK_VALUES = 64 * 2**20
"""Input values (time × band × pixels) per compositing task: what bounds its memory."""


def composite(method: str, reflectance, clear, target_day: float, *, date: int | None = None):
    """Lazy xarray version: ``reflectance(time, band, y, x)``, ``clear(time, y, x)`` → ``(band, y, x)``.

    ``least_cloudy`` needs the scene-wide clear fraction, so it picks the date lazily first and
    then selects it (no per-tile disagreement about which date is least cloudy); ``date`` (an
    index into ``time``) gives that choice instead (a run's validation chose it).
    """
    import xarray as xr

    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    days = (reflectance.time.values.astype("datetime64[D]").astype(float))
    if method == "least_cloudy" and date is not None:
        return reflectance.isel(time=int(date), drop=True)
    if method == "least_cloudy":
        usable = (clear.astype(bool) & reflectance.notnull().all("band")).mean(("y", "x")).compute().values
        return reflectance.isel(time=least_cloudy_date(usable, days, target_day), drop=True)
    fn = METHODS[method]

    def core(x, c):  # x (..., T, C) layout from apply_ufunc: move to (T, C, H, W)
        xx = np.moveaxis(x, (-2, -1), (0, 1))
        cc = np.moveaxis(c, -1, 0)
        out = fn(xx, cc, days, target_day)
        return np.moveaxis(out, 0, -1)

    if reflectance.chunks is not None:
        # every date and band of a block in one task: bound the block so that a task (and numpy's
        # nanmedian temporaries) stays bounded whatever the output chunk
        nt, nb = reflectance.sizes["time"], reflectance.sizes["band"]
        side = int(max(128, min(reflectance.chunks[-1][0], np.sqrt(COMPOSITE_TASK_VALUES / max(1, nt * nb)))))
        reflectance = reflectance.chunk({"time": -1, "band": -1, "y": side, "x": side})
        clear = clear.chunk({"time": -1, "y": side, "x": side})
    return xr.apply_ufunc(core, reflectance, clear, input_core_dims=[["time", "band"], ["time"]],
                          output_core_dims=[["band"]], dask="parallelized", output_dtypes=[np.float32]
                          ).transpose("band", "y", "x")


def composite_on_device(method: str, x, usable, dt, *, date: int | None = None):
    """The compositing methods in torch, for block reads on the model's device: ``x`` (T, C, H, W)
    reflectance (NaN = no data), ``usable`` (T, H, W) bool, ``dt`` (T,) days from the target day.
    The same rules (and results, to float rounding) as the numpy functions above; ``date``: the
    least-cloudy date chosen for the whole area (a block alone cannot choose it)."""
    import torch

    t_, c_, h, w = x.shape
    c = usable & torch.isfinite(x).all(1)
    dtt = torch.as_tensor(np.asarray(dt, np.float32), device=x.device)
    nan = torch.tensor(float("nan"), device=x.device)
    if method == "least_cloudy":
        if date is None:
            date = least_cloudy_date(c.flatten(1).float().mean(1).cpu().numpy(), np.asarray(dt, float), 0.0)
        return x[date].clone()
    if method == "median":
        return _unseen_from_all(_nanmedian_torch(torch.where(c[:, None], x, nan)), c.any(0), x)
    inf = torch.tensor(float("inf"), device=x.device)

    def take(idx):  # (H, W) date index → (C, H, W)
        return x.gather(0, idx[None, None].expand(1, c_, h, w))[0]

    if method == "mosaicking":
        dist = dtt.abs()[:, None, None] + torch.where(c, 0.0, inf)
        fallback = torch.nansum(x, 0) / (~torch.isnan(x)).sum(0)  # the mean of all observations
        return torch.where(c.any(0)[None], take(dist.argmin(0)), fallback)
    if method == "interpolation":
        d = dtt[:, None, None]
        before = torch.where(c & (d <= 0), -d, inf)
        after = torch.where(c & (d >= 0), d, inf)
        db, ib = before.min(0)
        da_, ia = after.min(0)
        has_b, has_a = torch.isfinite(db), torch.isfinite(da_)
        xb, xa = take(ib), take(ia)
        both_ok = has_b & has_a
        span = torch.where(both_ok, db + da_, torch.ones_like(db))
        wa = torch.where(both_ok, torch.where(span > 0, db / torch.where(span > 0, span, torch.ones_like(span)),
                                              torch.full_like(span, 0.5)), torch.zeros_like(span))
        both = (1 - wa)[None] * xb + wa[None] * xa
        out = torch.where(both_ok[None], both, torch.where(has_b[None], xb, xa))
        return _unseen_from_all(out, has_b | has_a, x)
    raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def _unseen_from_all(out, seen, x):
    """``out`` (C, H, W) with its pixels that no usable date saw set to the median of all their
    observations: computed on those pixels only, as they are usually few."""
    if bool(seen.all()):
        return out
    out = out.clone()
    out[:, ~seen] = _nanmedian_torch(x[:, :, ~seen])
    return out


def _nanmedian_torch(x):
    """numpy's ``nanmedian`` over the first axis (the mean of the two middle values of an even
    count; NaN where all are NaN): torch's own returns the lower middle value."""
    import torch

    isnan = torch.isnan(x)
    k = (~isnan).sum(0)
    from ..models.pixel import sorted_values

    s = sorted_values(torch.where(isnan, torch.full_like(x, float("inf")), x), 0)
    lo = ((k - 1).clamp(min=0) // 2)[None]
    hi = (k // 2).clamp(max=x.shape[0] - 1)[None]
    med = (s.gather(0, lo)[0] + s.gather(0, hi)[0]) / 2
    return torch.where(k > 0, med, torch.full_like(med, float("nan")))
