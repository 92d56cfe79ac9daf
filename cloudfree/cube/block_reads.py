"""The cube as block reads, for streamed model runs: each date × output block is read straight from
the assets, every band on its own grid where it can be (10 m as is; 20 m, 60 m and SCL at their
resolution, enlarged later on the model's device), so no GDAL warp, no float cube and no halo
tasks run on the CPU.

A read covers exactly one block of each grid: the grids' blocks partition them, so every COG tile
is decoded about once. The model's task for a block gathers its margin from the neighbouring
blocks' reads (:func:`gather`), which the same Dask graph shares.

Why: on the GPU host, GDAL's bilinear warp of the coarse bands was a large share of a streamed
run's task time, and halo copies of CPU-enlarged bands cost as much as the warp saved (the
measurements are in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np
import odc.stac
import pystac
from odc.geo.geobox import GeoBox

from ..bands import SCL
from .load import CubeSpec, solar_day, band_mapping, item_radiometry_by_day, plan_geobox
from .native import native_reads

__all__ = ["Grid", "BlockReads", "block_reads", "gather"]

log = logging.getLogger("odc.cloudfree")  # under "odc": the run's record of failed reads hears it


@dataclass(frozen=True)
class Grid:
    """Load names read together on one grid."""

    names: tuple[str, ...]
    geobox: GeoBox
    factor: int
    """Output pixels per grid pixel along each axis (1: the output grid itself)."""
    offset: tuple[int, int]
    """(rows, cols) of output pixels from the enlarged grid's origin to the output's."""
    direct: bool = False
    """Every item's file is local and on this grid's lattice: read with rasterio alone (windows
    of the files, no odc-stac per read: twice the decoded MB/s on 16 threads,
    ``benchmarks/results/block_reads_h100.jsonl``); else through odc-stac."""

    def to_grid(self, v: int, axis: int) -> float:
        """Output pixel edge ``v`` (along axis 0 = y, 1 = x) in this grid's pixels."""
        return (v + self.offset[axis]) / self.factor


@dataclass(frozen=True)
class BlockReads:
    """What a streamed run reads, per date and output block; picklable (it travels to workers)."""

    days: tuple[tuple[pystac.Item, ...], ...]
    """Items per solar day, in the cube's time order."""
    grids: tuple[Grid, ...]
    bands: tuple[str, ...]
    where: tuple[tuple[int, int], ...]
    """Per band: (grid index, index within the grid's names)."""
    scl: tuple[int, int] | None
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    nodata: int
    unusable: tuple[int, ...]
    dilate: int
    shape: tuple[int, int]
    chunk: int
    resampling: str
    fail_on_error: bool = True
    patch_url: object = None
    read_ahead: int = 4
    """Output blocks whose reads may run ahead of the model's tasks, beyond the neighbours those
    need: what bounds a streamed run's memory whatever the area (the memory plan's blocks at once)."""

    def describe(self) -> list[dict]:
        """The grids read, for the run's record: which names, at which factor of the output pixel."""
        return [{"names": list(g.names), "factor": g.factor, "reader": "rasterio" if g.direct else "odc-stac"}
                for g in self.grids]

    def edges(self, g: int, axis: int) -> list[int]:
        """Block boundaries of grid ``g`` along ``axis``: the output's block edges mapped onto the
        grid (floor), the first and last stretched to the grid's ends, so blocks partition it."""
        n = self.shape[axis]
        out = list(range(0, n, self.chunk)) + [n]
        grid = self.grids[g]
        if grid.factor == 1 and grid.offset == (0, 0):
            return out
        size = grid.geobox.shape[axis]
        inner = [int(np.floor(grid.to_grid(v, axis))) for v in out[1:-1]]
        return [0, *inner, size]

    def window(self, g: int, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
        """Grid ``g``'s pixels that output rows [y0, y1) × cols [x0, x1) need (one more grid
        pixel all round for an enlarged grid's bilinear weights); may exceed the grid."""
        grid = self.grids[g]
        if grid.factor == 1:
            return y0 + grid.offset[0], y1 + grid.offset[0], x0 + grid.offset[1], x1 + grid.offset[1]
        return (int(np.floor(grid.to_grid(y0, 0))) - 1, int(np.ceil(grid.to_grid(y1, 0))) + 1,
                int(np.floor(grid.to_grid(x0, 1))) - 1, int(np.ceil(grid.to_grid(x1, 1))) + 1)

    def blocks_for(self, g: int, a: int, b: int, c: int, d: int) -> list[tuple[int, int]]:
        """The (i, j) blocks of grid ``g`` whose reads hold any of rows [a, b) × cols [c, d)."""
        ey, ex = self.edges(g, 0), self.edges(g, 1)

        def span(e, lo, hi):
            lo, hi = max(lo, 0), min(hi, e[-1])
            if hi <= lo:
                return []
            return list(range(bisect.bisect_right(e, lo) - 1, bisect.bisect_left(e, hi)))

        return [(i, j) for i in span(ey, a, b) for j in span(ex, c, d)]

    def read(self, t: int, i: int, j: int) -> list[np.ndarray]:
        """Date ``t``, block (i, j): per grid, its load names' stored values, (names, h, w)."""
        out = []
        for g in range(len(self.grids)):
            ey, ex = self.edges(g, 0), self.edges(g, 1)
            out.append(self._read_grid(t, g, ey[i], ey[i + 1], ex[j], ex[j + 1]))
        return out

    def read_box(self, t: int, g: int, a: int, b: int, c: int, d: int) -> np.ndarray:
        """Date ``t``, grid ``g``'s rows [a, b) × cols [c, d), (names, b - a, d - c): the values a
        block read would give there (no data outside the grid), for windows that are not blocks
        (a run's validation windows)."""
        ny, nx = self.grids[g].geobox.shape
        ya, yb, xa, xb = max(a, 0), min(b, ny), max(c, 0), min(d, nx)
        inner = self._read_grid(t, g, ya, max(ya, yb), xa, max(xa, xb))
        out = np.full((inner.shape[0], b - a, d - c), self.nodata, dtype=inner.dtype)
        if ya < yb and xa < xb:
            out[:, ya - a : yb - a, xa - c : xb - c] = inner
        return out

    def _read_grid(self, t: int, g: int, a: int, b: int, c: int, d: int) -> np.ndarray:
        """Date ``t``, grid ``g``'s rows [a, b) × cols [c, d) (inside the grid), (names, h, w)."""
        grid = self.grids[g]
        box = grid.geobox[a:b, c:d]
        if 0 in box.shape:
            return np.zeros((len(grid.names), *box.shape), np.uint16)
        if grid.direct:
            return np.stack([_read_window(self.days[t], n, box, self.nodata if self.scl != (g, k) else 0,
                                          self.fail_on_error) for k, n in enumerate(grid.names)])
        resampling = {n: ("nearest" if self.scl == (g, k) else self.resampling) for k, n in enumerate(grid.names)}
        ds = odc.stac.load(list(self.days[t]), bands=list(grid.names), geobox=box, groupby="solar_day",
                           resampling=resampling, fail_on_error=self.fail_on_error, patch_url=self.patch_url)
        if ds.sizes.get("time", 0) != 1:
            raise RuntimeError(f"odc-stac grouped the items of one day into {ds.sizes.get('time', 0)} dates")
        return np.stack([ds[n].values[0] for n in grid.names])


def _local(href: str) -> str | None:
    u = urlparse(href)
    return u.path if u.scheme == "file" else href if u.scheme == "" or len(u.scheme) == 1 else None


def _is_local_asset(item: pystac.Item, name: str) -> bool:
    """``name`` is an asset of its own (not a band inside a multi-band asset) in a local file."""
    return name in item.assets and _local(item.assets[name].get_absolute_href()) is not None


def _read_window(items, name: str, box: GeoBox, nodata: int, fail_on_error: bool) -> np.ndarray:
    """``name`` over ``box`` (on the files' lattice) from the day's items: the first item with
    data wins where several cover a pixel (odc-stac's default), ``nodata`` where none does."""
    import rasterio
    from rasterio.windows import Window

    out = None
    filled = False
    ny, nx = box.shape
    for it in items:
        href = it.assets[name].get_absolute_href()
        try:
            with rasterio.open(_local(href)) as f:
                if out is None:
                    out = np.full((ny, nx), nodata, dtype=f.dtypes[0])
                col = round((box.affine.c - f.transform.c) / f.transform.a)
                row = round((box.affine.f - f.transform.f) / f.transform.e)
                r0, r1 = max(row, 0), min(row + ny, f.height)
                c0, c1 = max(col, 0), min(col + nx, f.width)
                if r0 >= r1 or c0 >= c1:
                    continue
                arr = f.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
                fnd = f.nodata if f.nodata is not None else nodata
        except Exception as exc:
            if fail_on_error:
                log.error("Failed to load %s due to %s", href, exc)
                raise
            log.warning("Ignoring read failure reading %s (reason: %s)", href, exc)
            continue
        if fnd != nodata:
            arr = np.where(arr == fnd, nodata, arr)
        dst = out[r0 - row : r1 - row, c0 - col : c1 - col]
        if not filled:  # the first item with pixels here: a plain copy
            dst[...] = arr
            filled = True
        else:
            empty = dst == nodata
            dst[empty] = arr[empty]
    return out if out is not None else np.full((ny, nx), nodata, np.uint16)


def _on_lattice(items, names, geobox: GeoBox) -> bool:
    """Every item's file of every name is local, in ``geobox``'s CRS, at its pixel size and on its
    lattice (a plain window of the file, no resampling)."""
    res = geobox.resolution
    for p, it in zip(odc.stac.parse_items(items), items):
        for n in names:
            band = p.bands.get((n, 1))
            if band is None or not _is_local_asset(it, n):
                return False
            g = band.geobox
            if g is None or g.crs != geobox.crs or g.resolution != res:
                return False
            dx, dy = (g.affine.c - geobox.affine.c) / res.x, (g.affine.f - geobox.affine.f) / res.y
            if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
                return False
    return True


def gather(src: BlockReads, g: int, reads: dict, a: int, b: int, c: int, d: int, fill,
           out: np.ndarray | None = None) -> np.ndarray:
    """Rows [a, b) × cols [c, d) of grid ``g`` (names, b - a, d - c) from the blocks' reads
    (``reads[(i, j)]`` = :meth:`BlockReads.read`'s list) into ``out`` (or a new array); ``fill``
    outside the grid."""
    ey, ex = src.edges(g, 0), src.edges(g, 1)
    first = next(iter(reads.values()))[g]
    if out is None:
        out = np.empty((first.shape[0], b - a, d - c), dtype=first.dtype)
    if a < 0 or c < 0 or b > ey[-1] or d > ex[-1]:
        out[...] = fill
    for (i, j), r in reads.items():
        blk = r[g]
        ya, yb = max(a, ey[i]), min(b, ey[i + 1])
        xa, xb = max(c, ex[j]), min(d, ex[j + 1])
        if ya < yb and xa < xb:
            out[:, ya - a : yb - a, xa - c : xb - c] = blk[:, ya - ey[i] : yb - ey[i], xa - ex[j] : xb - ex[j]]
    return out


def block_reads(items: list[pystac.Item], aoi, spec: CubeSpec, *, times=None, fail_on_error: bool = True,
                 patch_url=None, read_ahead: int = 4) -> BlockReads:
    """How a streamed run reads ``items`` over the output grid of ``aoi`` and ``spec`` (resolved):
    coarser bands and SCL on their own grid where it lines up with the output's, every other band
    on the output grid through odc-stac's warp (another CRS, a shifted grid)."""
    spec = spec.resolved(items)
    mapping = band_mapping(items, spec.bands)
    geobox = plan_geobox(items, aoi, spec)
    names = list(dict.fromkeys(mapping.values()))
    plans = native_reads(items, names, geobox) if spec.resampling in ("bilinear", "nearest") else {}
    scl_name = mapping.get(SCL)
    grids_by_plan: dict = {}
    for n in names:
        grids_by_plan.setdefault(plans.get(n), []).append(n)
    grids = []
    local = all(_is_local_asset(it, n) for it in items for n in names)
    for plan, group in grids_by_plan.items():
        if plan is None:
            grids.append(Grid(tuple(group), geobox, 1, (0, 0), direct=_on_lattice(items, group, geobox)))
        else:
            grids.append(Grid(tuple(group), plan.geobox, plan.factor, plan.offset, direct=local))
    loc = {n: (g, k) for g, grid in enumerate(grids) for k, n in enumerate(grid.names)}
    by_day: dict = {}
    for it in items:
        by_day.setdefault(solar_day(it), []).append(it)
    days = sorted(by_day)
    if times is not None and len(times) != len(days):
        raise RuntimeError(f"the cube has {len(times)} dates, the items {len(days)} solar days")
    from ..bands import band_source

    key, index = band_source(items[0].assets, spec.bands[0])
    rad = item_radiometry_by_day(items, key, index)
    return BlockReads(
        days=tuple(tuple(by_day[d]) for d in days), grids=tuple(grids), bands=tuple(spec.bands),
        where=tuple(loc[mapping[b]] for b in spec.bands), scl=loc.get(scl_name) if scl_name else None,
        scale=tuple(float(rad[d].scale) for d in days), offset=tuple(float(rad[d].offset) for d in days),
        nodata=int(rad[days[0]].nodata if rad[days[0]].nodata is not None else 0),
        unusable=tuple(spec.mask.unusable), dilate=int(spec.mask.dilate), shape=(geobox.shape.y, geobox.shape.x),
        chunk=int(spec.chunk), resampling=spec.resampling, fail_on_error=fail_on_error, patch_url=patch_url,
        read_ahead=max(1, int(read_ahead)))
