"""The block reads' device work (:mod:`cloudfree.reconstruct.model_reads`) in numpy, for the core
install, which has no torch: enlarge the coarse bands as GDAL's warp would, build the clear mask
from SCL, count the clear observations, run the numpy model and the compositing candidates.

The same steps, in the same float32 arithmetic, as the torch functions they stand for, so a run
gives the same pixels with or without torch (``tests/test_core_install.py``).
"""

from __future__ import annotations

import numpy as np

from ..cube.block_reads import BlockReads
from ..cube.radiometry import STORE_MAX_DN, decode_plan, dn_limit

__all__ = ["enlarge_np", "on_host", "phase_taps"]

_F = np.float32


def phase_taps(n_in: int, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, w0, w1)`` of bilinear enlargement by ``f`` along one axis (pixel centres,
    align_corners=False; the image's edge pixels repeated beyond it), for each of its ``f·n_in``
    outputs. The weights come from the output's phase (its index mod ``f``) alone, so an output
    pixel gets the same weights in any window or block that holds it: a stored cube and streamed
    reads of any tiling enlarge it alike. float32 weights, the same on every device."""
    o = np.arange(n_in * f)
    p = o % f
    pos = (p + 0.5) / f - 0.5  # the source position relative to the output's own source pixel
    step = np.floor(pos).astype(np.int64)
    lam = pos - step
    i0 = np.clip(o // f + step, 0, n_in - 1)
    i1 = np.clip(o // f + step + 1, 0, n_in - 1)
    return i0, i1, (1.0 - lam).astype(_F), lam.astype(_F)


def _bilinear(v: np.ndarray, f: int) -> np.ndarray:
    """(N, h, w) float32 → (N, f·h, f·w): along the width, then the height, each a rounded
    product per tap and their rounded sum (what :func:`~cloudfree.reconstruct.model_reads.enlarge`
    computes in torch)."""
    r0, r1, wy0, wy1 = phase_taps(v.shape[-2], f)
    c0, c1, wx0, wx1 = phase_taps(v.shape[-1], f)
    rows = v[:, :, c0] * wx0 + v[:, :, c1] * wx1
    return rows[:, r0] * wy0[:, None] + rows[:, r1] * wy1[:, None]


def enlarge_np(a: np.ndarray, factor: int, nodata, nearest: bool) -> np.ndarray:
    """:func:`~cloudfree.reconstruct.model_reads.enlarge` in numpy: (N, h, w) int32 → (N, f·h, f·w)."""
    f = factor
    if nearest:
        return a.repeat(f, -2).repeat(f, -1)
    v = a.astype(_F)
    valid = (a != nodata).astype(_F) if nodata is not None else np.ones_like(v)
    num = _bilinear(v * valid, f)
    den = _bilinear(valid, f)
    val = np.clip(np.round(num / np.maximum(den, _F(1e-12))), 0, 65535)
    if nodata is not None:
        under = valid.repeat(f, -2).repeat(f, -1) > 0
        val = np.where(under & (den > 1e-6), val, _F(nodata))
    return val.astype(a.dtype)


def _inside(src: BlockReads, window) -> np.ndarray:
    wy0, wy1, wx0, wx1 = window
    ny, nx = src.shape
    rows, cols = np.arange(wy0, wy1), np.arange(wx0, wx1)
    return ((rows >= 0) & (rows < ny))[:, None] & ((cols >= 0) & (cols < nx))[None, :]


def _widened(src: BlockReads, hosts, boxes, g: int, k: int, window) -> np.ndarray:
    wy0, wy1, wx0, wx1 = window
    grid = src.grids[g]
    band = hosts[g][:, k].astype(np.int32)
    if grid.factor == 1:
        return band
    a, _, c, _ = boxes[g]
    oy, ox = a * grid.factor - grid.offset[0], c * grid.factor - grid.offset[1]
    near = src.scl == (g, k) or src.resampling == "nearest"
    big_band = enlarge_np(band, grid.factor, None if src.scl == (g, k) else src.nodata, near)
    return big_band[:, wy0 - oy : wy0 - oy + wy1 - wy0, wx0 - ox : wx0 - ox + wx1 - wx0]


def _stored_bands(src: BlockReads, hosts, boxes, dates, window, big, h, w, q):
    inside = _inside(src, window)
    hh, ww = inside.shape
    qy, qx = slice(big - q, big + h + q), slice(big - q, big + w + q)
    g0, _ = src.where[0]
    dn = np.empty((len(dates), len(src.where), h + 2 * q, w + 2 * q), dtype=hosts[g0].dtype)
    has = np.ones((len(dates), hh, ww), dtype=bool)
    limit = np.array([dn_limit(src.scale[t], src.offset[t]) for t in dates], _F).reshape(-1, 1, 1)
    for b, (g, k) in enumerate(src.where):
        band = _widened(src, hosts, boxes, g, k, window)
        has &= (band != src.nodata) & (band <= limit)
        dn[:, b] = np.where(inside[qy, qx], band[:, qy, qx], np.int32(src.nodata)).astype(dn.dtype)
        del band
    return dn, has, inside


def _usable(src: BlockReads, hosts, boxes, window, has, inside) -> np.ndarray:
    d = src.dilate
    if src.scl is None:
        return has | ~inside
    scl = _widened(src, hosts, boxes, *src.scl, window)
    bad = np.isin(scl, list(src.unusable)) & inside
    if d:
        from scipy.ndimage import binary_dilation

        from ..bands import disk

        shape = disk(d)
        bad = np.stack([binary_dilation(b, structure=shape) for b in bad])
    return (~bad & has) | ~inside


def _composites(names, dn, usable, scale, offset, nodata, dt, least_cloudy_date) -> dict:
    from .composites import METHODS, least_cloudy_date as pick

    sc = np.asarray(scale, _F).reshape(-1, 1, 1, 1)
    of = np.asarray(offset, _F).reshape(-1, 1, 1, 1)
    refl = np.where(dn == nodata, _F(np.nan), dn.astype(_F) * sc + of)
    out = {}
    for n in names:
        if n == "least_cloudy":
            date = least_cloudy_date
            if date is None:
                c = usable & np.isfinite(refl).all(1)
                date = pick(c.reshape(len(c), -1).mean(1), np.asarray(dt, float), 0.0)
            out[n] = refl[date].copy()
        else:
            out[n] = METHODS[n](refl, usable, np.asarray(dt, float), 0.0)
    return out


def _as_store_dn(src: BlockReads, dn: np.ndarray, dates: list[int]):
    """``(dn, (scale, offset, nodata))``: the store's DN where :func:`decode_plan` can take each
    date's DN there (decoded as every other path decodes them), else the dates' own."""
    shifts, scale, offset, nodata = decode_plan([src.scale[t] for t in dates], [src.offset[t] for t in dates], src.nodata)
    if shifts is not None:
        shift = np.asarray(shifts, np.int32).reshape(-1, 1, 1, 1)
        dn = np.where(dn == src.nodata, np.int32(0), np.minimum(dn.astype(np.int32) + shift, STORE_MAX_DN))
    return dn, (scale, offset, nodata)


def on_host(src: BlockReads, hosts, boxes, dates, core, window, big, *, model, cfg, dt, margin, reach, recipe=None,
            least_cloudy_date=None) -> np.ndarray:
    """:func:`~cloudfree.reconstruct.model_reads._on_device` in numpy: widen, mask, count and run
    the recipe's candidates; (C + 1, h, w) float32, the clear count last."""
    from .tiles import pixels_numpy

    y0, y1, x0, x1 = core
    h, w = y1 - y0, x1 - x0
    dn, has, inside = _stored_bands(src, hosts, boxes, dates, window, big, h, w, reach)
    usable = _usable(src, hosts, boxes, window, has, inside)
    d, q = src.dilate, reach
    count = usable[:, big : big + h, big : big + w].sum(0, dtype=np.int32)
    dn, (scale, offset, nodata) = _as_store_dn(src, dn, dates)
    recipe = tuple(recipe) if recipe else (("model", 1.0),)
    parts = {}
    if any(n == "model" for n, _ in recipe):
        ud = usable[:, d : d + h + 2 * margin, d : d + w + 2 * margin]
        parts["model"] = pixels_numpy(dn, ud, dt=dt, model=model, cfg=cfg, bands=list(src.bands), margin=margin,
                                      decode=(scale, offset, nodata), reach=q)
    others = [n for n, _ in recipe if n != "model"]
    if others:
        parts.update(_composites(others, dn[:, :, q : q + h, q : q + w], usable[:, big : big + h, big : big + w],
                                 scale, offset, nodata, dt, least_cloudy_date))
    out = parts[recipe[0][0]] if len(recipe) == 1 else sum(wt * parts[n] for n, wt in recipe)
    return np.concatenate([out.astype(_F), count[None].astype(_F)])


def window_from_reads(src: BlockReads, hosts: list[np.ndarray], ys: slice, xs: slice,
                      dates: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A window of the output grid as a stored cube holds it, from the block reads' values:
    ``(reflectance (T, C, h, w) float32, clear (T, h, w) bool)``. ``hosts[g]`` holds grid g's
    stored values over :func:`window_boxes` (T, names, ...). The same widening, mask, decode and
    float32 arithmetic as an output block's, so a run validates on the pixels it writes."""
    y0, y1, x0, x1 = ys.start, ys.stop, xs.start, xs.stop
    h, w = y1 - y0, x1 - x0
    big = src.dilate
    window = (y0 - big, y1 + big, x0 - big, x1 + big)
    boxes = window_boxes(src, ys, xs)
    dn, has, inside = _stored_bands(src, hosts, boxes, dates, window, big, h, w, 0)
    usable = _usable(src, hosts, boxes, window, has, inside)[:, big : big + h, big : big + w]
    dn, (scale, offset, nodata) = _as_store_dn(src, dn, dates)
    sc = np.asarray(scale, _F).reshape(-1, 1, 1, 1)
    of = np.asarray(offset, _F).reshape(-1, 1, 1, 1)
    refl = np.where(dn == nodata, _F(np.nan), dn.astype(_F) * sc + of)
    return refl, usable & has[:, big : big + h, big : big + w]


def window_boxes(src: BlockReads, ys: slice, xs: slice) -> list[tuple[int, int, int, int]]:
    """Per grid, the rows and columns (a, b, c, d) a window of the output grid needs: its pixels,
    the mask's dilation around them and, for an enlarged grid, the bilinear weights' neighbours."""
    d = src.dilate
    return [src.window(g, ys.start - d, ys.stop + d, xs.start - d, xs.stop + d) for g in range(len(src.grids))]


def window_reader_from_reads(src: BlockReads, times: np.ndarray):
    """``(ys, xs, dates) → delayed Dataset``: a streamed run's validation windows (``reflectance``,
    ``clear``) read and decoded as its output blocks are (:func:`window_from_reads`), one read task
    per date, so the pixels validated are the pixels written: a ``--keep-cube`` run of the same
    request validates on the same values and so chooses the same recipes."""
    import dask

    def read(ys: slice, xs: slice, dates: list[int]):
        boxes = window_boxes(src, ys, xs)
        per_date = [dask.delayed(_read_boxes, pure=False)(src, t, boxes) for t in dates]
        return dask.delayed(_window_dataset, pure=False)(src, per_date, ys, xs, list(dates), times[list(dates)])

    return read


def _read_boxes(src: BlockReads, t: int, boxes) -> list[np.ndarray]:
    return [src.read_box(t, g, *box) for g, box in enumerate(boxes)]


def _window_dataset(src: BlockReads, per_date: list[list[np.ndarray]], ys: slice, xs: slice, dates: list[int], times):
    import xarray as xr

    hosts = [np.stack([r[g] for r in per_date]) for g in range(len(src.grids))]
    refl, clear = window_from_reads(src, hosts, ys, xs, dates)
    return xr.Dataset({"reflectance": (("time", "band", "y", "x"), refl), "clear": (("time", "y", "x"), clear.astype(np.uint8))},
                      coords={"time": times, "band": list(src.bands)})
