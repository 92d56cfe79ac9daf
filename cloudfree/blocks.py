"""Halo'd windows of a Dask array on a global grid: what makes a tiled run equal an untiled one.

The image is mirror-padded by the halo, and every output block of ``chunk`` pixels takes its own
window of the padded image, whatever the image size (one pixel up). Block functions get the block's
origin, so patch grids anchored to the whole image stay the same for any tiling.
"""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np

__all__ = ["pad_symmetric", "pad_constant", "edges", "map_windows"]


def symmetric_index(n: int, h: int) -> np.ndarray:
    """Indices of ``range(n)`` padded by ``h`` on both sides, mirrored with the edge repeated (as
    dask's ``boundary="reflect"``), for any ``h`` — also when ``h > n`` (a 1-pixel image)."""
    m = np.mod(np.arange(-h, n + h), 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def pad_symmetric(a: da.Array, axis: int, h: int) -> da.Array:
    """Mirror-pad a Dask array by ``h`` on both sides of ``axis``: slices where the image is at
    least ``h`` wide, a gather where it is smaller. Image edges then look like the inside of a
    larger image to the block function, whatever the AOI size."""
    n = a.shape[axis]
    if n >= h:
        sl = [slice(None)] * a.ndim
        left, right = list(sl), list(sl)
        left[axis] = slice(h - 1, None, -1) if h > 0 else slice(0, 0)
        right[axis] = slice(n - 1, n - h - 1 if n - h - 1 >= 0 else None, -1)
        return da.concatenate([a[tuple(left)], a, a[tuple(right)]], axis=axis)
    return da.take(a, symmetric_index(n, h), axis=axis)


def pad_constant(a: da.Array, h: int, value) -> da.Array:
    """Pad the last two axes by ``h`` with ``value`` as one block per side (``da.pad`` chunks the
    padding like the edge chunks: 1-pixel images then give tens of thousands of tasks)."""
    if h <= 0:
        return a
    lead = a.shape[:-2]
    lead_chunks = a.chunks[:-2]
    ny, nx = a.shape[-2:]
    side = lambda y, x: da.full(lead + (y, x), value, dtype=a.dtype, chunks=lead_chunks + ((y,), (x,)))  # noqa: E731
    mid = da.concatenate([side(ny, h), a, side(ny, h)], axis=-1)
    return da.concatenate([side(h, nx + 2 * h), mid, side(h, nx + 2 * h)], axis=-2)


def edges(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of blocks of ``chunk`` along an axis of ``n``."""
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def map_windows(fn: Callable, a: da.Array, halo: int, chunk: int, *, out_lead: tuple[int, ...], dtype,
                name: str, **kwargs) -> da.Array:
    """``fn(window, origin=(y0, x0), **kwargs)`` on every block of the last two axes of ``a``:
    ``window`` is the block plus ``halo`` mirrored pixels on each side (all leading axes whole) and
    must return ``out_lead + (h, w)``. Returns the assembled lazy array."""
    ny, nx = a.shape[-2:]
    nd = a.ndim
    padded = pad_symmetric(pad_symmetric(a, nd - 2, halo), nd - 1, halo)
    rows = []
    for i, (y0, y1) in enumerate(edges(ny, chunk)):
        row = []
        for j, (x0, x1) in enumerate(edges(nx, chunk)):
            win = padded[..., y0 : y1 + 2 * halo, x0 : x1 + 2 * halo].rechunk(-1)
            row.append(da.map_blocks(fn, win, origin=(y0, x0), dtype=dtype,
                                     chunks=tuple((n,) for n in out_lead) + ((y1 - y0,), (x1 - x0,)),
                                     drop_axis=list(range(len(out_lead), nd - 2)) if nd - 2 > len(out_lead) else None,
                                     meta=np.empty((0,) * (len(out_lead) + 2), dtype), name=f"{name}-{i}-{j}",
                                     **kwargs))
        rows.append(row)
    return da.block(rows)
