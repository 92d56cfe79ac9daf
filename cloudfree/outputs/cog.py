"""COGs written in one pass, in parallel: each region's tiles are compressed where the region is
computed, and the file is assembled from them at the end.

A region (one Zarr chunk of one period) is tile-aligned at full resolution and at every overview
level where its size is still a multiple of the 256 px tile, so it compresses those tiles itself,
in its own task on whichever worker computed it: deflate with the horizontal predictor, exactly
the bytes GDAL would write. Coarser levels, where one tile spans several regions, are fed by a
disk-backed sum and count at the first such level (each region assigns its own disjoint part),
so the averages are exact means over the valid full-resolution pixels whatever the order the
regions finish in. :meth:`CogPlan.finish` compresses those few small levels, writes the TIFF
header with every IFD first (tifffile), then the tiles, coarsest level first, as the COG layout
asks; a reader fetches the header, then only the tiles it shows.

Nothing here holds more than one region in memory. An interrupted run keeps the parts of the
regions it finished (``<name>.parts/``, keyed by the request's digest) and the next run redoes only
the others; parts from another request are discarded, never reused.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from io import BytesIO
from pathlib import Path

import numpy as np

__all__ = ["CogPlan", "COG_SCALE", "TILE"]

COG_SCALE = 1e-4
"""Reflectance = DN × 1e-4 (offset 0) in the output COGs; DN 0 is nodata."""
TILE = 256
try:  # ISA-L's deflate: zlib streams any reader decodes, the size of zlib's level 1, several times faster
    from isal import isal_zlib as _deflate

    DEFLATE_LEVEL = 2
except ImportError:  # a platform without an isal wheel: the standard library
    _deflate = zlib
    DEFLATE_LEVEL = 1
"""The tiles' deflate level: ISA-L (``isal``) at 2 where installed, else zlib at 1; both several
times faster than GDAL's default 6 on predicted uint16 reflectance, for files slightly larger
(``benchmarks/cog_encode.py``, ``benchmarks/RESULTS.md``). Encoding the tiles was the largest
share of a full-tile run's thread time after decoding the inputs."""
_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737, 42112, 42113)
"""ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory, GeoDoubleParams,
GeoAsciiParams, GDAL_METADATA, GDAL_NODATA: what GDAL itself writes into the first IFD."""


def to_dn(refl: np.ndarray) -> np.ndarray:
    """Reflectance → uint16 DN (× 1e4, at least 1 where valid so 0 stays nodata)."""
    return np.where(np.isfinite(refl), np.clip(np.round(refl / COG_SCALE), 1, 65535), 0).astype(np.uint16)


def _encode(tile: np.ndarray) -> bytes:
    """(h, w, bands) uint16 → one TIFF tile: padded to 256², horizontal predictor, deflate."""
    h, w, nb = tile.shape
    full = np.zeros((TILE, TILE, nb), "<u2")
    full[:h, :w] = tile
    delta = full.copy()
    np.subtract(full[:, 1:], full[:, :-1], out=delta[:, 1:])  # wraps modulo 2**16, as TIFF's predictor 2
    return _deflate.compress(delta.tobytes(), DEFLATE_LEVEL)


def _halve(s: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of 2×2 blocks ((y, x, band) arrays; odd edges padded with nothing)."""
    h, w = s.shape[:2]
    if h % 2 or w % 2:
        pad = ((0, h % 2), (0, w % 2), (0, 0))
        s, c = np.pad(s, pad), np.pad(c, pad)
    s = s.reshape(s.shape[0] // 2, 2, s.shape[1] // 2, 2, -1).sum((1, 3), dtype=np.float32)
    c = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2, -1).sum((1, 3), dtype=c.dtype)
    return s, c


def _mean_dn(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return to_dn(np.where(c > 0, s / np.maximum(c, 1).astype(np.float32), np.float32(np.nan)))


class _TileFile:
    """One level's tiles of one region (or band of rows), written as they are compressed; the
    file appears under its name only when complete."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(path.name + ".tmp")
        self.f = open(self.tmp, "wb")
        self.index: list[list[int]] = []
        self.pos = 0

    def add(self, dn: np.ndarray, ty0: int, tx0: int) -> None:
        """Tiles of ``dn`` (y, x, band), whose first tile is (ty0, tx0) of its level."""
        for i in range(0, dn.shape[0], TILE):
            for j in range(0, dn.shape[1], TILE):
                b = _encode(dn[i : i + TILE, j : j + TILE])
                self.f.write(b)
                self.index.append([ty0 + i // TILE, tx0 + j // TILE, self.pos, len(b)])
                self.pos += len(b)

    def close(self) -> list[list[int]]:
        """[[ty, tx, offset, size], ...] of the tiles in the file."""
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.index


@dataclass(frozen=True)
class CogPlan:
    """One period's COG: its size, the regions' size (the Zarr chunks) and the overview count.
    Small and picklable: it travels to the workers, which call :meth:`region`."""

    path: str
    ny: int
    nx: int
    nb: int
    cy: int
    cx: int
    levels: int
    digest: str = ""

    @classmethod
    def for_image(cls, path: str | Path, ny: int, nx: int, nb: int, cy: int, cx: int, digest: str = "") -> CogPlan:
        levels = min(max(2, int(np.ceil(np.log2(max(ny, nx) / TILE))) + 1), int(np.floor(np.log2(min(ny, nx)))))
        return cls(str(path), ny, nx, nb, cy, cx, max(levels, 0), digest)

    @property
    def parts(self) -> Path:
        return Path(self.path + ".parts")

    @property
    def shared(self) -> int:
        """The first level where a tile spans several regions: summed on disk, not compressed per
        region (full resolution when the chunks are not multiples of 256 px). A region as tall
        (wide) as the image never shares a tile along that axis: one block of a small image
        compresses every level itself."""
        whole_y, whole_x = self.cy >= self.ny, self.cx >= self.nx
        k = 0
        while k <= self.levels and (whole_y or self.cy % (TILE << k) == 0) and (whole_x or self.cx % (TILE << k) == 0):
            k += 1
        return k

    def shape(self, k: int) -> tuple[int, int]:
        return -(-self.ny // (1 << k)), -(-self.nx // (1 << k))

    def regions(self) -> list[tuple[int, int]]:
        return [(y0, x0) for y0 in range(0, self.ny, self.cy) for x0 in range(0, self.nx, self.cx)]

    _SHARED = (("shared_sum.bin", np.float32), ("shared_count.bin", np.uint32))
    """The shared level's sums and counts: raw (y, x, band) arrays on disk, read and written with
    positioned file I/O, not mapped: the pages of a mapped grid count in the process's resident memory
    (and the grid grows with the area)."""

    def _shared_rows(self, r0: int, r1: int) -> list[np.ndarray]:
        """Rows [r0, r1) of the shared sums and counts, each (rows, x, band)."""
        _, w = self.shape(self.shared)
        out = []
        for name, dtype in self._SHARED:
            with open(self.parts / name, "rb") as f:
                f.seek(r0 * w * self.nb * np.dtype(dtype).itemsize)
                out.append(np.fromfile(f, dtype, (r1 - r0) * w * self.nb).reshape(r1 - r0, w, self.nb))
        return out

    def prepare(self, fresh: bool = False) -> None:
        """Make ``<name>.parts/``; parts of another request or layout, or all with ``fresh``
        (the mosaic is written anew), are discarded."""
        meta = self.parts / "plan.json"
        want = json.dumps({**asdict(self), "parts_format": 2}, sort_keys=True)  # 2: shared grids as raw files
        if not fresh and meta.exists() and meta.read_text() == want:
            return
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True)
        if self.shared <= self.levels:  # created (sparse) once, here: regions only write their own part
            h, w = self.shape(self.shared)
            for name, dtype in self._SHARED:
                with open(self.parts / name, "wb") as f:
                    f.truncate(h * w * self.nb * np.dtype(dtype).itemsize)
        meta.write_text(want)

    def region(self, y0: int, x0: int, refl: np.ndarray) -> None:
        """Compress the tiles of the region at (y0, x0) with reflectance ``refl`` (band, y, x).

        Full resolution goes a strip of 256 rows at a time, so besides its input a worker holds a
        quarter of the region (the first overview's sums), not several copies of it."""
        a = np.asarray(refl, np.float32)
        own = min(self.shared, self.levels + 1)  # the levels whose tiles lie inside this region
        acc = self.shared <= self.levels
        cdt = np.uint16 if self.shared <= 7 else np.uint32  # counts reach 4**shared
        index: dict[str, list] = {}
        full = _TileFile(self.parts / f"r{y0}_{x0}.L0.bin") if own else None
        halves = []
        for i in range(0, a.shape[1], TILE):
            strip = np.ascontiguousarray(np.moveaxis(a[:, i : i + TILE], 0, -1))
            if full is not None:
                full.add(to_dn(strip), (y0 + i) // TILE, x0 // TILE)
            if own > 1 or acc:
                s, c = np.nan_to_num(strip), np.isfinite(strip).astype(cdt)
                if self.shared == 0:
                    self._accumulate(y0 + i, x0, s, c)
                else:
                    halves.append(_halve(s, c))
        if full is not None:
            index["0"] = full.close()
        if halves:
            s, c = np.concatenate([h[0] for h in halves]), np.concatenate([h[1] for h in halves])
            del halves
            for k in range(1, own):
                if k > 1:
                    s, c = _halve(s, c)
                index[str(k)] = self._write_tiles(f"r{y0}_{x0}.L{k}.bin", _mean_dn(s, c), (y0 >> k) // TILE,
                                                  (x0 >> k) // TILE)
            if acc:
                for _ in range(max(own - 1, 1), self.shared):
                    s, c = _halve(s, c)
                self._accumulate(y0 >> self.shared, x0 >> self.shared, s, c)
        tmp = self.parts / f"r{y0}_{x0}.json.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self.parts / f"r{y0}_{x0}.json")  # the region counts as done only now

    def _accumulate(self, ys: int, xs: int, s: np.ndarray, c: np.ndarray) -> None:
        """This region's own part of the shared level's sums and counts (assigned, not added:
        a region done twice leaves the same values)."""
        _, w = self.shape(self.shared)
        for (name, dtype), a in zip(self._SHARED, (s, c)):
            a = np.ascontiguousarray(a, dtype)
            size = np.dtype(dtype).itemsize
            fd = os.open(self.parts / name, os.O_WRONLY)
            try:
                for r in range(a.shape[0]):  # one write per row of the region's part
                    os.pwrite(fd, a[r].tobytes(), ((ys + r) * w + xs) * self.nb * size)
            finally:
                os.close(fd)

    def _write_tiles(self, name: str, dn: np.ndarray, ty0: int, tx0: int) -> list:
        part = _TileFile(self.parts / name)
        part.add(dn, ty0, tx0)
        return part.close()

    def missing(self) -> list[tuple[int, int]]:
        return [(y0, x0) for y0, x0 in self.regions() if not (self.parts / f"r{y0}_{x0}.json").exists()]

    def finish(self, read: Callable[[int, int], np.ndarray], meta: dict, threads: int | None = None) -> Path:
        """Compress the regions not done yet (``read(y0, x0)`` → reflectance) and the shared
        levels, then write the COG (``<name>.part``, renamed when complete) and drop the parts.

        ``meta``: ``crs``, ``transform``, ``descriptions`` and ``tags``, written by GDAL into a
        2×2 GeoTIFF whose GeoTIFF and GDAL tags are copied, so they read exactly as GDAL's own."""
        from concurrent.futures import ThreadPoolExecutor

        threads = threads or os.cpu_count() or 1
        todo = self.missing()
        with ThreadPoolExecutor(threads) as pool:
            for i in range(0, len(todo), 2 * threads):  # bounded read-ahead: memory stays flat
                list(pool.map(lambda r: self.region(*r, read(*r)), todo[i : i + 2 * threads]))
            upper = self._shared_levels(pool, threads)
        files: dict[int, list[tuple[Path, list]]] = {}
        for y0, x0 in self.regions():
            index = json.loads((self.parts / f"r{y0}_{x0}.json").read_text())
            for k, tiles in index.items():
                files.setdefault(int(k), []).append((self.parts / f"r{y0}_{x0}.L{k}.bin", tiles))
        files.update(upper)
        part = Path(self.path + ".part")
        try:
            self._assemble(part, files, meta)
            os.replace(part, self.path)
        finally:
            part.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
        return Path(self.path)

    def _shared_levels(self, pool, threads: int) -> dict[int, list[tuple[Path, list]]]:
        """Levels from :attr:`shared` up, from the summed grid, a tile row at a time: each level
        holds at most two tile rows of sums, so this does not grow with the area (reading the whole
        grid at once made a large run's memory grow at its end)."""
        from collections import deque

        out: dict[int, list[tuple[Path, list]]] = {}
        if self.shared > self.levels:
            return out
        levels = range(self.shared, self.levels + 1)
        pending: dict[int, list] = {k: [] for k in levels}
        row = dict.fromkeys(levels, 0)
        jobs: dict[int, list] = {k: [] for k in levels}
        busy: deque = deque()

        def emit(k: int, s: np.ndarray, c: np.ndarray) -> None:  # one tile row of level k (the last may be short)
            name = f"L{k}_{row[k]}.bin"
            busy.append(pool.submit(self._write_tiles, name, _mean_dn(s, c), row[k] // TILE, 0))
            jobs[k].append((name, busy[-1]))
            while len(busy) > 2 * threads:  # bounded: compressed rows wait for the pool
                busy.popleft().result()
            row[k] += s.shape[0]
            if k < self.levels:
                feed(k + 1, *_halve(s, c))  # tile rows start at even rows: halving a row = halving the grid

        def feed(k: int, s: np.ndarray, c: np.ndarray) -> None:
            pending[k].append((s, c))
            n = sum(p[0].shape[0] for p in pending[k])
            while n >= TILE:
                s_all = np.concatenate([p[0] for p in pending[k]])
                c_all = np.concatenate([p[1] for p in pending[k]])
                pending[k] = [(s_all[TILE:], c_all[TILE:])] if n > TILE else []
                n = max(n - TILE, 0)
                emit(k, s_all[:TILE], c_all[:TILE])

        h, _ = self.shape(self.shared)
        for i in range(0, h, TILE):
            feed(self.shared, *self._shared_rows(i, min(i + TILE, h)))
        for k in levels:  # the last, shorter row of each level; finer levels first, as they feed coarser ones
            left, pending[k] = pending[k], []
            if sum(p[0].shape[0] for p in left):
                emit(k, np.concatenate([p[0] for p in left]), np.concatenate([p[1] for p in left]))
        for k in levels:
            out[k] = [(self.parts / n, f.result()) for n, f in jobs[k]]
        return out

    def _header(self, offsets: dict[int, np.ndarray], sizes: dict[int, np.ndarray], meta: dict, bigtiff: bool) -> bytes:
        """Every IFD, tile offsets and sizes included, before any tile (tifffile writes the pages
        with empty tiles; the offsets and sizes are then overwritten in place)."""
        from tifffile import TiffFile, TiffWriter

        extratags = _gdal_tags(self, meta)
        buf = BytesIO()
        with TiffWriter(buf, bigtiff=bigtiff, shaped=False) as tw:
            for k in range(self.levels + 1):
                h, w = self.shape(k)
                kw = {"extratags": extratags} if k == 0 else {"subfiletype": 1}
                tw.write(itertools.repeat(b""), shape=(h, w, self.nb), dtype=np.uint16, tile=(TILE, TILE),
                         photometric="minisblack", planarconfig="contig", compression="adobe_deflate",
                         predictor=2, software=False, metadata=None, **kw)
        buf = BytesIO(buf.getvalue())
        with TiffFile(buf, mode="r+", name=":mem:") as tf:
            size = len(buf.getbuffer())
            for k, page in enumerate(tf.pages):
                page.tags[324].overwrite([int(o) + size for o in offsets[k]])
                page.tags[325].overwrite([int(n) for n in sizes[k]])
            if len(buf.getbuffer()) != size:
                raise RuntimeError("COG header grew while its tile offsets were written")
        return bytes(buf.getbuffer())

    def _assemble(self, part: Path, files: dict[int, list[tuple[Path, list]]], meta: dict) -> None:
        offsets, sizes, order, pos = {}, {}, [], 0
        for k in range(self.levels, -1, -1):  # coarsest first: a viewer's first reads are small
            h, w = self.shape(k)
            nty, ntx = -(-h // TILE), -(-w // TILE)
            offsets[k], sizes[k] = np.zeros(nty * ntx, np.int64), np.zeros(nty * ntx, np.int64)
            seen = np.zeros(nty * ntx, bool)
            for path, tiles in files.get(k, []):
                for ty, tx, off, n in tiles:
                    offsets[k][ty * ntx + tx], sizes[k][ty * ntx + tx] = pos + off, n
                    seen[ty * ntx + tx] = True
                order.append(path)
                pos += path.stat().st_size
            if not seen.all():
                raise RuntimeError(f"{self.path}: {int((~seen).sum())} tiles of level {k} were never written")
        header = self._header(offsets, sizes, meta, bigtiff=pos > 3_500_000_000)
        with open(part, "wb") as f:
            f.write(header)
            for p in order:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, f, 16 << 20)


def _gdal_tags(plan: CogPlan, meta: dict) -> list[tuple]:
    """GeoTIFF georeferencing, nodata and GDAL's metadata (band scale, offset, description, tags)
    as GDAL writes them: from a 2×2 GeoTIFF GDAL writes in memory."""
    from rasterio.io import MemoryFile
    from tifffile import TiffFile

    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=2, height=2, count=plan.nb, dtype="uint16", nodata=0,
                      crs=meta["crs"], transform=meta["transform"]) as dst:
            dst.scales = (COG_SCALE,) * plan.nb
            dst.offsets = (0.0,) * plan.nb
            dst.descriptions = tuple(meta.get("descriptions") or ())
            dst.update_tags(**(meta.get("tags") or {}))
        with TiffFile(BytesIO(mem.read())) as tf:
            tags = tf.pages.first.tags
            return [(t.code, int(t.dtype), t.count, t.value, True) for t in tags.values() if t.code in _GEO_TAGS]
