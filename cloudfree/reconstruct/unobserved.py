"""Pixels with no clear observation in their period's window: a value from a widened window.

A period's image has no value where none of its dates saw the pixel clear. Users expect a value
and a flag, so by default such a pixel takes the value interpolated in time between the nearest
periods, before and after, whose windows did see it clear (one side only: that side's value):
the run's window widened to its neighbouring periods, made of observed values only. Where no
period saw the pixel clear it stays NaN. ``filled`` marks every filled pixel.

Why this and not the period's least-bad (least cloudy) observation: on real series with the truth
known, the least-bad observation is a cloud's value far more often than not, while the widened
window is close to the surface (``benchmarks/unobserved_fill.py``, ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["fill_from_neighbours", "interpolate_gaps"]


def interpolate_gaps(x: np.ndarray, seen: np.ndarray, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x with its unseen entries filled, filled mask)`` along the last axis (the periods):
    linear in time between the nearest seen entries before and after, or the one side's value.
    ``x`` (..., T) float, ``seen`` (..., T) bool, ``days`` (T,) increasing."""
    out = np.array(x, dtype=np.float32, copy=True)
    filled = np.zeros(seen.shape, bool)
    n = len(days)
    for t in range(n):
        need = ~seen[..., t]
        if not need.any():
            continue
        before = np.full(need.shape, -1)
        after = np.full(need.shape, -1)
        for k in range(t - 1, -1, -1):  # nearest seen period before t (the latest one)
            before = np.where((before < 0) & seen[..., k], k, before)
        for k in range(t + 1, n):  # nearest seen period after t (the earliest one)
            after = np.where((after < 0) & seen[..., k], k, after)
        has_b, has_a = before >= 0, after >= 0
        xb = np.take_along_axis(x, np.maximum(before, 0)[..., None], -1)[..., 0]
        xa = np.take_along_axis(x, np.maximum(after, 0)[..., None], -1)[..., 0]
        db = days[t] - days[np.maximum(before, 0)]
        da = days[np.maximum(after, 0)] - days[t]
        wb = np.where(has_b & has_a, da / np.maximum(db + da, 1e-9), has_b.astype(np.float64))
        val = wb * np.nan_to_num(xb) + (1 - wb) * np.nan_to_num(xa)
        ok = need & (has_b | has_a)
        out[..., t] = np.where(ok, val, out[..., t])
        filled[..., t] = ok
    return out, filled


def fill_from_neighbours(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` (period images: ``reflectance``, ``clear_count``) with every pixel of no clear
    observation filled from the neighbouring periods (see the module), lazily, and a ``filled``
    layer (1 where filled); one period alone has no neighbours and is returned with ``filled`` 0."""
    seen = ds["clear_count"] > 0
    if ds.sizes["time"] < 2:
        # zeros made in the count's own tasks: a region's layers come from one task, so it is written once computed
        return ds.assign(filled=(~seen & seen).astype(np.uint8).assign_attrs(_FILLED_ATTRS))
    days = ds.time.values.astype("datetime64[D]").astype(np.float64)

    def fill(x, s):
        return interpolate_gaps(x, s, days)

    x = ds["reflectance"]
    s = seen.broadcast_like(x).transpose(*x.dims)
    if x.chunks:  # every period of a block in one chunk, rechunked by tasks (never a P2P shuffle to disk)
        axis = {x.get_axis_num("time"): -1}
        x, s = x.copy(data=x.data.rechunk(axis, method="tasks")), s.copy(data=s.data.rechunk(axis, method="tasks"))
    refl, filled = xr.apply_ufunc(
        fill, x, s, input_core_dims=[["time"], ["time"]], output_core_dims=[["time"], ["time"]],
        dask="parallelized", output_dtypes=[np.float32, bool])
    refl = refl.transpose(*ds["reflectance"].dims).assign_attrs(ds["reflectance"].attrs)
    filled = filled.any("band") if "band" in filled.dims else filled
    filled = filled.transpose(*seen.dims).astype(np.uint8).assign_attrs(_FILLED_ATTRS)
    return ds.assign(reflectance=refl, filled=filled)


_FILLED_ATTRS = {"long_name": "1 where no clear observation existed in the period's window and the value is "
                              "interpolated between the nearest periods that had one (a widened window)"}
