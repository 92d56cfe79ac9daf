"""A per-pixel model straight from block reads (:mod:`cloudfree.cube.block_reads`): one read task per
date × block, one model task per block that gathers its margin from the neighbouring reads, and on
the model's device enlarges the coarse bands (as GDAL's warp would), builds the clear mask from
SCL, counts the clear observations and runs the model. Nothing is warped, decoded or padded on the
CPU, and the stored digital numbers cross the bus as they are.
"""

from __future__ import annotations

from ..tuning import STRIPE, PANEL_ROWS

import contextlib
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import Layer, MaterializedLayer

from ..cube.radiometry import STORE_MAX_DN, decode_plan, dn_limit
from ..cube.block_reads import BlockReads, gather
from ..heap import release_heap
from .tiles import (TileConfig, download, gpu_slot, pinned_buffer, pixels_on_device, resolve_device, staging,
                    to_device)

__all__ = ["model_from_reads", "ReadsLayer", "predict_from_reads", "enlarge", "STRIPE", "PANEL_ROWS", "panel_of"]



READ_PRIORITY = {"priority": -1}
"""Reads run when no other task is ready: in the graph's own order the scheduler ran the next
reads before the writes of finished blocks, whose results then piled up until the panel ended
(in memory, or spilled to disk). The
model's tasks and the writes keep the default priority, so reads still overlap the model."""


def _panel(i: int, j: int) -> tuple[int, int]:
    """The panel (stripe, row band) of block (i, j)."""
    return j // STRIPE, i // PANEL_ROWS


def panel_of(region: dict, chunk: int) -> tuple[int, int]:
    """The panel of an output region (``{"y": slice, "x": slice, ...}``) of a streamed run in
    ``chunk`` px blocks: regions of one panel are written by one graph."""
    return _panel(region["y"].start // chunk, region["x"].start // chunk)


def enlarge(a, factor: int, nodata, nearest: bool):
    """(N, h, w) int32 tensor → (N, f·h, f·w) of the same dtype, as GDAL's warp kernel enlarges
    an integer band: bilinear at pixel centres with nodata taking no weight and no data where the
    pixel under the centre has none (rounded to the nearest integer), or nearest for classes.
    The weights depend on each output's phase only (:func:`~cloudfree.reconstruct.reads_numpy.phase_taps`):
    the same values for any window, and the stored cube's (:mod:`cloudfree.cube.native`)."""
    import torch

    from .reads_numpy import phase_taps

    f = factor
    if nearest:
        return a.repeat_interleave(f, -2).repeat_interleave(f, -1)
    taps = [[torch.as_tensor(t, device=a.device) for t in phase_taps(n, f)] for n in a.shape[-2:]]
    (r0, r1, wy0, wy1), (c0, c1, wx0, wx1) = taps

    def bilinear(v):  # width, then height: one rounded product per tap, their rounded sum
        rows = v[:, :, c0] * wx0 + v[:, :, c1] * wx1
        return rows[:, r0] * wy0[:, None] + rows[:, r1] * wy1[:, None]

    v = a.to(torch.float32)
    valid = (a != nodata).to(torch.float32) if nodata is not None else torch.ones_like(v)
    num = bilinear(v * valid)
    den = bilinear(valid)
    val = torch.round(num / den.clamp_min(1e-12)).clamp(0, 65535)  # the DN are unsigned 16-bit
    if nodata is not None:
        under = valid.repeat_interleave(f, -2).repeat_interleave(f, -1) > 0
        val = torch.where(under & (den > 1e-6), val, torch.tensor(float(nodata), device=a.device))
    return val.to(a.dtype)


def _disk(pixels: int):
    import torch

    from ..bands import disk

    return torch.from_numpy(disk(pixels).astype(np.float32))


def predict_from_reads(src: BlockReads, reads: dict, *, dates: list[int], block: tuple[int, int], model,
                     cfg: TileConfig, dt: np.ndarray, margin: int, reach: int, recipe=None,
                     least_cloudy_date: int | None = None) -> np.ndarray:
    """One output block: (C + 1, h, w) float32, the reflectance and, last, the number of clear
    observations. ``reads[(t, i, j)]``: :meth:`BlockReads.read` of the neighbourhood. ``recipe``:
    ``((candidate, weight), ...)`` from the run's validation (default: the model alone); the
    compositing candidates run on the device beside the model
    (:func:`~cloudfree.reconstruct.composites.composite_on_device`)."""
    from ..extras import has_torch

    i, j = block
    ny, nx = src.shape
    y0, x0 = i * src.chunk, j * src.chunk
    y1, x1 = min(y0 + src.chunk, ny), min(x0 + src.chunk, nx)
    big = margin + src.dilate  # the mask's window: the context margin, and the dilation's reach beyond it
    wy0, wy1, wx0, wx1 = y0 - big, y1 + big, x0 - big, x1 + big
    boxes = [src.window(g, wy0, wy1, wx0, wx1) for g in range(len(src.grids))]
    by_date: dict = {}
    for (t, ii, jj), r in reads.items():
        by_date.setdefault(t, {})[(ii, jj)] = r
    first = next(iter(reads.values()))
    device = resolve_device(cfg.device)
    cuda = device.startswith("cuda")
    # gathered straight into a pinned buffer, which the upload reads from (one host copy per
    # value), before taking a GPU slot: the slot is held for device work only
    with pinned_buffer(device) as buf:
        hosts = staging([((len(dates), len(grid.names), b - a, e - c), first[g].dtype)
                         for g, (grid, (a, b, c, e)) in enumerate(zip(src.grids, boxes))], device, buf)
        for g, (host, (a, b, c, e)) in enumerate(zip(hosts, boxes)):
            for k, t in enumerate(dates):  # outside the grid: no data (only ever outside the image)
                gather(src, g, by_date[t], a, b, c, e, src.nodata, out=host[k])
        if not has_torch():  # the core install: the same steps in numpy
            from .reads_numpy import on_host

            return on_host(src, hosts, boxes, dates, (y0, y1, x0, x1), (wy0, wy1, wx0, wx1), big, model=model,
                           cfg=cfg, dt=dt, margin=margin, reach=reach, recipe=recipe, least_cloudy_date=least_cloudy_date)
        import torch

        with (gpu_slot(device) if cuda else contextlib.nullcontext()), torch.inference_mode():
            return _on_device(src, hosts, boxes, dates, device, (y0, y1, x0, x1), (wy0, wy1, wx0, wx1), big,
                              model=model, cfg=cfg, dt=dt, margin=margin, reach=reach, recipe=recipe,
                              least_cloudy_date=least_cloudy_date)


def _on_device(src: BlockReads, hosts, boxes, dates, device, core, window, big, *, model, cfg, dt, margin, reach,
               recipe=None, least_cloudy_date=None):
    """Upload, enlarge, mask, count and run the recipe's candidates for :func:`predict_from_reads`."""
    import torch

    y0, y1, x0, x1 = core
    h, w = y1 - y0, x1 - x0
    dev = to_device(hosts, device)  # the stored values (uint16 DN, uint8 classes), as read
    dn, has, inside = _stored_bands(src, dev, boxes, dates, device, window, big, h, w, reach)
    usable = _usable(src, dev, boxes, window, has, inside)
    d, q = src.dilate, reach
    count = usable[:, big : big + h, big : big + w].sum(0, dtype=torch.int32)
    shifts, scale, offset, nodata = decode_plan([src.scale[t] for t in dates], [src.offset[t] for t in dates], src.nodata)
    if shifts is not None:  # the store's DN, decoded as every other path decodes them (store_shifts)
        shift = torch.tensor(shifts, dtype=torch.int32, device=dn.device).reshape(-1, 1, 1, 1)
        dn = torch.where(dn == src.nodata, torch.zeros_like(dn, dtype=torch.int32),
                         (dn.to(torch.int32) + shift).clamp(max=STORE_MAX_DN))
    recipe = tuple(recipe) if recipe else (("model", 1.0),)
    parts = {}
    if any(n == "model" for n, _ in recipe):
        ud = usable[:, d : d + h + 2 * margin, d : d + w + 2 * margin]
        parts["model"] = pixels_on_device(dn, ud, dt=dt, model=model, cfg=cfg, device=device,
                                          bands=list(src.bands), margin=margin, decode=(scale, offset, nodata), reach=q)
    others = [n for n, _ in recipe if n != "model"]
    if others:
        parts.update(_composites_on_device(others, dn[:, :, q : q + h, q : q + w], usable[:, big : big + h, big : big + w],
                                           scale, offset, nodata, dt, least_cloudy_date))
    out = parts[recipe[0][0]] if len(recipe) == 1 else sum(w * parts[n] for n, w in recipe)
    res = torch.cat([out, count[None].to(torch.float32)])
    return download(res, device)


def _inside(src: BlockReads, window, device):
    """(hh, ww) bool: the image's own pixels in the window (outside: no data for the model and
    "usable" for the context features, the same convention as a padded block)."""
    import torch

    wy0, wy1, wx0, wx1 = window
    ny, nx = src.shape
    rows = torch.arange(wy0, wy1, device=device)
    cols = torch.arange(wx0, wx1, device=device)
    return ((rows >= 0) & (rows < ny))[:, None] & ((cols >= 0) & (cols < nx))[None, :]


def _widened(src: BlockReads, dev, boxes, g: int, k: int, window):
    """Name k of grid g on the output grid's window, (T, hh, ww) int32: one band at a time, so the
    device (or, without a GPU, the host) holds one widened band beside the stored block."""
    import torch

    wy0, wy1, wx0, wx1 = window
    grid = src.grids[g]
    band = dev[g][:, k].to(torch.int32)
    if grid.factor == 1:
        return band
    a, _, c, _ = boxes[g]
    oy = a * grid.factor - grid.offset[0]  # output row and column of the enlarged array's origin
    ox = c * grid.factor - grid.offset[1]
    near = src.scl == (g, k) or src.resampling == "nearest"
    big_band = enlarge(band, grid.factor, None if src.scl == (g, k) else src.nodata, near)
    return big_band[:, wy0 - oy : wy0 - oy + wy1 - wy0, wx0 - ox : wx0 - ox + wx1 - wx0]


def _stored_bands(src: BlockReads, dev, boxes, dates, device, window, big, h, w, q):
    """``(dn (T, C, h+2q, w+2q) as stored, has data (T, hh, ww), inside (hh, ww))``: every band
    widened to the output grid; the model runs q pixels beyond the block (its date departure),
    no data outside the image; saturated or over-bright values are never data."""
    import torch

    inside = _inside(src, window, device)
    hh, ww = inside.shape
    qy, qx = slice(big - q, big + h + q), slice(big - q, big + w + q)
    g0, _ = src.where[0]
    dn = torch.empty((len(dates), len(src.where), h + 2 * q, w + 2 * q), dtype=dev[g0].dtype, device=device)
    has = torch.ones((len(dates), hh, ww), dtype=torch.bool, device=device)
    nodata = torch.tensor(src.nodata, dtype=torch.int32, device=device)
    limit = torch.tensor([dn_limit(src.scale[t], src.offset[t]) for t in dates], dtype=torch.float32,
                         device=device).reshape(-1, 1, 1)  # saturated or cloud: never usable
    for b, (g, k) in enumerate(src.where):
        band = _widened(src, dev, boxes, g, k, window)
        has &= (band != src.nodata) & (band <= limit)
        dn[:, b] = torch.where(inside[qy, qx], band[:, qy, qx], nodata).to(dn.dtype)
        del band
    return dn, has, inside


def _usable(src: BlockReads, dev, boxes, window, has, inside):
    """(T, hh, ww) bool: data, and not an unusable SCL class grown by the mask's dilation; outside
    the image counts as usable (for the context features)."""
    import torch
    import torch.nn.functional as F

    d = src.dilate
    if src.scl is not None:
        scl = _widened(src, dev, boxes, *src.scl, window)
        bad = torch.zeros_like(has)
        for cls in src.unusable:
            bad |= scl == cls
        del scl
        bad &= inside
        if d:
            bad = F.conv2d(bad.float()[:, None], _disk(d).to(bad.device)[None, None], padding=d)[:, 0] > 0
        usable = ~bad & has
    else:
        usable = has
    return usable | ~inside


def _composites_on_device(names, dn, usable, scale, offset, nodata, dt, least_cloudy_date) -> dict:
    """The recipe's compositing candidates of a block's core: ``dn`` (T, C, h, w) stored values,
    decoded per date; ``usable`` (T, h, w) the block's clear mask."""
    import torch

    from .composites import composite_on_device

    dev = dn.device
    sc = torch.tensor(scale, dtype=torch.float32, device=dev).reshape(-1, 1, 1, 1)
    of = torch.tensor(offset, dtype=torch.float32, device=dev).reshape(-1, 1, 1, 1)
    refl = torch.where(dn == nodata, torch.tensor(float("nan"), device=dev), dn.float() * sc + of)
    return {n: composite_on_device(n, refl, usable, dt, date=least_cloudy_date) for n in names}


def _read(src: BlockReads, after=None, *, t: int, i: int, j: int) -> list[np.ndarray]:
    """:meth:`BlockReads.read`; ``after``: a model task's :func:`_finished` it waits for."""
    return src.read(t, i, j)


def _finished(_block) -> None:
    """A block's model task is done (a token: nothing of the block travels to the reads)."""
    return None


def _predict(src: BlockReads, blocks: list, *, windows: list[tuple[int, int, int]], **kw) -> np.ndarray:
    try:
        return predict_from_reads(src, dict(zip(windows, blocks)), **kw)
    finally:
        release_heap()  # the block's reads and staging are freed: keep the worker's memory that of one block


def model_from_reads(src: BlockReads, period, model, tiles: TileConfig, *, dt: np.ndarray, margin: int,
                   reach: int, recipe=None, least_cloudy_date: int | None = None) -> da.Array:
    """(C + 1, y, x) lazy: the model's output and the clear count for one period (see the module).

    The array's graph is one :class:`ReadsLayer`, which writes out a panel's tasks only when
    that panel is culled (see PANEL_ROWS): a run written panel by panel never holds the whole
    area's tasks (their memory grows with the area: ``benchmarks/graph_memory.py``)."""
    from dask.highlevelgraph import HighLevelGraph

    ny, nx = src.shape
    ch = src.chunk
    token = tokenize(str(model) if isinstance(model, (str, Path)) else id(model), tiles, period, ch, src.days,
                     src.grids, src.bands, src.unusable, src.dilate, src.scale, src.offset, recipe, least_cloudy_date)
    name = f"cloudfree-model-{token}"
    from ..cluster import gpu_task_resources

    layer = ReadsLayer(name, token, src, period, model, tiles, dt=dt, margin=margin, reach=reach,
                          resources=gpu_task_resources(), recipe=recipe, least_cloudy_date=least_cloudy_date)
    rows = tuple(min(ch, ny - y0) for y0 in range(0, ny, ch))
    cols = tuple(min(ch, nx - x0) for x0 in range(0, nx, ch))
    return da.Array(HighLevelGraph({name: layer}, {name: set()}), name, chunks=((len(src.bands) + 1,), rows, cols),
                    dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def _is_read(key) -> bool:
    return isinstance(key, str) and key.startswith("cloudfree-read-")


def _is_model(key) -> bool:
    return isinstance(key, str) and key.startswith("cloudfree-predict-")


class _PerKey:
    """A layer annotation that holds for some keys only (Dask calls a callable annotation with
    each key; ``None`` leaves the key unannotated)."""

    def __init__(self, which, value):
        self.which, self.value = which, value

    def __call__(self, key):
        return self.value if self.which(key) else None


class ReadsLayer(Layer):
    """The tasks of a streamed period: one read task per date × block, one model task per block
    and a token per finished block; its output keys are the array's blocks ``(name, 0, i, j)``.

    Back-pressure: reads are roots, so Dask's threads would run them all at once while the model's
    tasks queue for the GPU (memory then grows with the area). Blocks go in order, row by row within
    stripes of STRIPE block columns, and a block's reads wait until the model has finished the
    block ``lag`` places before it. ``lag`` exceeds the farthest block any model task reads, so no
    task waits on itself, plus ``read_ahead`` blocks so reads overlap the model (with too few
    blocks ahead, reads and model alternate instead). In stripes the farthest
    neighbour is at most a stripe's row ahead, whatever the area's width, so what is in flight is
    flat in the area. Stripes are cut into panels of PANEL_ROWS rows: a panel reads the blocks
    around it that it needs itself (the neighbour panel's edge blocks) and waits on nothing
    outside it, so :meth:`cull` writes out only the wanted blocks' panels (written task by task:
    built from ``dask.delayed`` calls, each call culled the whole graph so far, and a full tile in
    1024 px blocks spent minutes building its graph before the first read). Reads carry
    READ_PRIORITY and model tasks the GPU resource, as per-key annotations of the one layer (with
    a layer per task, reads and model tasks that wait on each other both ways formed a cycle
    between layers)."""

    def __init__(self, name: str, token: str, src: BlockReads, period, model, tiles: TileConfig, *,
                 dt: np.ndarray, margin: int, reach: int, resources: dict | None, recipe=None,
                 least_cloudy_date: int | None = None):
        annotations = {"priority": _PerKey(_is_read, READ_PRIORITY["priority"])}
        if resources:
            annotations["resources"] = _PerKey(_is_model, resources)
        super().__init__(annotations=annotations)
        self.name, self.token, self.src, self.period = name, token, src, period
        self.kw = dict(dates=list(period.dates), model=model, cfg=tiles, dt=dt, margin=margin, reach=reach,
                       recipe=recipe, least_cloudy_date=least_cloudy_date)
        ny, nx = src.shape
        ch = src.chunk
        self.nby, self.nbx = nby, nbx = -(-ny // ch), -(-nx // ch)
        self.order = [(i, j) for s0 in range(0, nbx, STRIPE) for p0 in range(0, nby, PANEL_ROWS)
                      for i in range(p0, min(p0 + PANEL_ROWS, nby)) for j in range(s0, min(s0 + STRIPE, nbx))]
        self.pos = {b: n for n, b in enumerate(self.order)}
        self.span: dict = {}  # each panel's places in the order (a panel's blocks are consecutive)
        for n, b in enumerate(self.order):
            p = _panel(*b)
            self.span[p] = (self.span.get(p, (n,))[0], n + 1)
        ahead = 0
        for (i, j) in self.order:
            ahead = max(ahead, max(self.pos[self.slot(n, (i, j))] - self.pos[i, j] for n in self.needs(i, j)))
        self.lag = ahead + 1 + src.read_ahead
        self._full: dict | None = None
        self.src_key = f"cloudfree-source-{token}"

    def needs(self, i: int, j: int) -> list[tuple[int, int]]:
        """The blocks, on any grid, whose reads the model task of block (i, j) gathers its window from."""
        src, ch, big = self.src, self.src.chunk, self.kw["margin"] + self.src.dilate
        ny, nx = src.shape
        y0, x0 = i * ch, j * ch
        y1, x1 = min(y0 + ch, ny), min(x0 + ch, nx)
        return sorted({b for g in range(len(src.grids))
                       for b in src.blocks_for(g, *src.window(g, y0 - big, y1 + big, x0 - big, x1 + big))})

    def slot(self, need: tuple[int, int], block: tuple[int, int]) -> tuple[int, int]:
        """Where a read sits in the order: its own block, or the nearest block of the reader's panel."""
        stripe, band = _panel(*block)
        s0, p0 = stripe * STRIPE, band * PANEL_ROWS
        return (min(max(need[0], p0), min(p0 + PANEL_ROWS, self.nby) - 1),
                min(max(need[1], s0), min(s0 + STRIPE, self.nbx) - 1))

    def _done(self, i: int, j: int) -> str:
        return f"cloudfree-done-{self.token}-{i}-{j}"

    def panel_tasks(self, panel: tuple[int, int]) -> dict:
        """Every task of one panel: the source, its reads, model tasks, tokens and output blocks."""
        from functools import partial

        t0, t1 = self.span[panel]
        dsk: dict = {self.src_key: self.src}
        for i, j in self.order[t0:t1]:
            windows, keys = [], []
            for t in self.kw["dates"]:
                for ii, jj in self.needs(i, j):
                    at = self.slot((ii, jj), (i, j))
                    key = f"cloudfree-read-{self.token}-{t}-{ii}-{jj}" + ("" if at == (ii, jj) else "-for-%d-%d" % panel)
                    if key not in dsk:
                        earlier = self.pos[at] - self.lag
                        after = self._done(*self.order[earlier]) if earlier >= t0 else None
                        dsk[key] = (partial(_read, t=t, i=ii, j=jj), self.src_key, after)
                    windows.append((t, ii, jj))
                    keys.append(key)
            pkey = f"cloudfree-predict-{self.period.label}-{i}-{j}-{self.token}"
            dsk[pkey] = (partial(_predict, windows=windows, block=(i, j), **self.kw), self.src_key, keys)
            dsk[self._done(i, j)] = (_finished, pkey)
            dsk[(self.name, 0, i, j)] = pkey
        return dsk

    has_legacy_tasks = True
    """The tasks are tuples; said here because Dask would otherwise look at every task to find out."""

    def get_output_keys(self):
        return {(self.name, 0, i, j) for i, j in self.order}

    def is_materialized(self) -> bool:
        return False

    def cull(self, keys, all_hlg_keys):
        """Only the panels of the wanted blocks are written out, then culled to what those need."""
        from dask._task_spec import convert_legacy_graph, cull

        panels = {_panel(*k[2:]) for k in keys if self._is_output(k)}
        dsk: dict = {}
        for p in sorted(panels):
            dsk.update(self.panel_tasks(p))
        out = cull(convert_legacy_graph(dsk), set(keys) & dsk.keys())
        return MaterializedLayer(out, annotations=self.annotations), {k: set(v.dependencies) for k, v in out.items()}

    def _all(self) -> dict:
        """Every panel's tasks, kept once made (a caller that takes the whole graph: not a streamed
        run, which culls panel by panel)."""
        if self._full is None:
            self._full = {}
            for p in self.span:
                self._full.update(self.panel_tasks(p))
        return self._full

    def __getitem__(self, key):
        return self._all()[key]

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def _is_output(self, key) -> bool:
        return isinstance(key, tuple) and len(key) == 4 and key[0] == self.name and key[2:] in self.pos

    def __contains__(self, key) -> bool:
        return self._is_output(key) or key in self._all()
