"""Coarse bands read at their own grid and upsampled here, instead of warped by GDAL per pixel.

Loading a 10 m cube, odc-stac asks GDAL to reproject every 20 m and 60 m band (and SCL) onto the
10 m grid: a bilinear warp that costs several times reading the same band at 20 m (``benchmarks/RESULTS.md``).
When every item's grid of a band is in the same CRS as the output, with a pixel an integer multiple
``f`` of the output's and lattices that line up (as Sentinel-2 tiles do), the band is read on its own
grid — a plain copy — and enlarged ``f``× here, as GDAL's warp kernel does it: bilinear with
pixel-centre geometry, nodata excluded from the weights, and no data where the coarse pixel under
the fine pixel's centre has none; nearest (pixel replication) for SCL. Anything
else — another CRS, a shifted grid — still goes through odc-stac's warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox

__all__ = ["NativeRead", "native_reads", "upsample", "upsample_block"]


@dataclass(frozen=True)
class NativeRead:
    """How to read one band on its own grid: the grid (the output's area plus one coarse pixel all
    round), the factor, and where the output's first pixel lies in the enlarged array."""

    geobox: GeoBox
    factor: int
    offset: tuple[int, int]
    """(rows, cols) of output pixels between the enlarged grid's origin and the output's."""


def native_reads(items: list[pystac.Item], names: list[str], geobox: GeoBox) -> dict[str, NativeRead]:
    """The load names that can be read on their own grid for ``geobox``, and how."""
    res = abs(geobox.resolution.x)
    if geobox.resolution.y != -res:
        return {}
    fx0, fy0 = geobox.affine.c, geobox.affine.f
    out = {}
    parsed = list(odc.stac.parse_items(items))
    for name in names:
        grids = []
        for p in parsed:
            band = p.bands.get((name, 1))
            grids.append(band.geobox if band is not None else None)
        g0 = grids[0]
        if g0 is None or g0.crs != geobox.crs or g0.resolution.y != -g0.resolution.x:
            continue
        r = abs(g0.resolution.x)
        f = round(r / res)
        if f < 2 or abs(f * res - r) > 1e-9 * r:
            continue

        def whole(v: float, unit: float) -> bool:
            return abs(v / unit - round(v / unit)) < 1e-6

        # every item on the same coarse lattice, and the output on its fine sub-lattice
        if not all(g is not None and g.crs == geobox.crs and g.resolution == g0.resolution
                   and whole(g.affine.c - g0.affine.c, r) and whole(g.affine.f - g0.affine.f, r) for g in grids):
            continue
        if not (whole(fx0 - g0.affine.c, res) and whole(fy0 - g0.affine.f, res)):
            continue
        kx = int(np.floor(round((fx0 - g0.affine.c) / res) / f)) - 1
        ky = int(np.floor(round((g0.affine.f - fy0) / res) / f)) - 1
        x0, y0 = g0.affine.c + kx * r, g0.affine.f - ky * r
        ox, oy = round((fx0 - x0) / res), round((y0 - fy0) / res)
        ny, nx = -(-(oy + geobox.shape.y) // f) + 1, -(-(ox + geobox.shape.x) // f) + 1
        from affine import Affine

        gb = GeoBox((ny, nx), Affine(r, 0, x0, 0, -r, y0), geobox.crs)
        out[name] = NativeRead(gb, f, (oy, ox))
    return out


def _enlarge_axis(a: np.ndarray, f: int, axis: int) -> np.ndarray:
    """Bilinear ×f along ``axis`` with pixel-centre geometry (GDAL's convention; ends clamped).
    Fine pixel p of every f lies at a fixed offset from its coarse pixel, so each phase is two
    shifted slices: no gathers, and numpy releases the GIL, so Dask's threads run it in parallel."""
    axis %= a.ndim
    n = a.shape[axis]

    def sl(start, stop=None, step=None):
        return (slice(None),) * axis + (slice(start, stop, step),)

    ap = np.concatenate([a[sl(0, 1)], a, a[sl(n - 1, n)]], axis)
    shape = list(a.shape)
    shape[axis] = n * f
    out = np.empty(shape, np.float32)
    for p in range(f):
        u = (p + 0.5) / f - 0.5  # position of this phase relative to its coarse pixel's centre
        s = int(np.floor(u))
        w = np.float32(u - s)
        o = out[sl(p, None, f)]
        np.multiply(ap[sl(1 + s, 1 + s + n)], 1 - w, out=o)
        o += ap[sl(2 + s, 2 + s + n)] * w
    return out


def _enlarge(a: np.ndarray, f: int) -> np.ndarray:
    """Bilinear ×f of (N, h, w) float32 (separable)."""
    return _enlarge_axis(_enlarge_axis(a, f, -2), f, -1)


def upsample_block(block: np.ndarray, factor: int, nodata: float | None, nearest: bool) -> np.ndarray:
    """(…, h + 2, w + 2) coarse values with a 1-pixel halo → (…, f·h, f·w) of the same dtype."""
    f = factor
    if nearest:
        core = block[..., 1:-1, 1:-1]
        return core.repeat(f, -2).repeat(f, -1)
    lead, (hh, ww) = block.shape[:-2], block.shape[-2:]
    flat = block.reshape(-1, hh, ww)
    core = (slice(None), slice(f, f * (hh - 1)), slice(f, f * (ww - 1)))
    if block.dtype in (np.uint8, np.uint16):  # stored DN: the streamed runs' kernel, so both give one picture
        from ..reconstruct.reads_numpy import enlarge_np

        fill = None if nodata is None or np.isnan(nodata) else int(nodata)
        val = enlarge_np(flat.astype(np.int32), f, fill, False)[core]
        return val.astype(block.dtype).reshape(*lead, *val.shape[-2:])
    has_fill = nodata is not None and not np.isnan(nodata) and bool((flat == nodata).any())
    if has_fill:  # nodata takes no weight; a fine pixel with no valid neighbour is nodata
        valid = (flat != nodata).astype(np.float32)
        num = _enlarge(np.where(valid > 0, flat, 0).astype(np.float32), f)[core]
        den = _enlarge(valid, f)[core]
        with np.errstate(invalid="ignore", divide="ignore"):
            val = num / den
    else:
        val = _enlarge(flat.astype(np.float32), f)[core]
    if np.issubdtype(block.dtype, np.integer):
        info = np.iinfo(block.dtype)
        val = np.clip(np.rint(val), info.min, info.max)
    if has_fill:  # as GDAL's warp kernel: no data where the coarse pixel under the centre has none
        under = valid[:, 1:-1, 1:-1].repeat(f, -2).repeat(f, -1) > 0
        val = np.where(under & (den > 1e-6), val, nodata)
    return val.astype(block.dtype).reshape(*lead, *val.shape[-2:])


def upsample(coarse: xr.DataArray, plan: NativeRead, fine_like: xr.DataArray, *, nearest: bool) -> xr.DataArray:
    """A lazy (time, y, x) band read on ``plan.geobox``, enlarged onto ``fine_like``'s grid (its
    coords and chunks)."""
    nodata = coarse.attrs.get("nodata")
    arr, f = coarse.data, plan.factor
    out = da.map_overlap(upsample_block, arr, depth={0: 0, 1: 1, 2: 1}, boundary="nearest", trim=False,
                         dtype=arr.dtype, chunks=(arr.chunks[0], tuple(f * c for c in arr.chunks[1]),
                                                  tuple(f * c for c in arr.chunks[2])),
                         factor=f, nodata=nodata, nearest=nearest, meta=np.empty((0, 0, 0), arr.dtype))
    (oy, ox), ny, nx = plan.offset, fine_like.sizes["y"], fine_like.sizes["x"]
    out = out[:, oy : oy + ny, ox : ox + nx].rechunk(fine_like.data.chunks)
    return xr.DataArray(out, dims=fine_like.dims, coords=fine_like.coords, attrs=dict(coarse.attrs), name=coarse.name)
