"""Streamed model runs read every date × block straight from the assets, each band on its own grid,
and enlarge, mask and count on the model's device: the same pictures as the stored cube, which
GDAL's warp made, for any tiling."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import cloudfree
from cloudfree.catalog import bundled_catalog


@pytest.mark.parametrize("factor", [2, 6])
def test_enlarge_on_the_device_equals_the_gdal_kernel(factor):
    """The torch enlargement equals the numpy kernel that is tested against GDAL's warp (the
    stored cube's, so a stored and a streamed run share it), value for value."""
    import torch

    from cloudfree.cube.native import upsample_block
    from cloudfree.reconstruct.model_reads import enlarge

    rng = np.random.default_rng(factor)
    a = rng.integers(1, 12000, (3, 9, 11)).astype(np.uint16)
    a[0, 2:4, 3:6] = 0  # nodata takes no weight; none under a fine pixel's centre gives none
    a[1, 0, :] = 0
    ref = upsample_block(a, factor, 0, nearest=False)
    got = enlarge(torch.from_numpy(a).to(torch.int32), factor, 0, nearest=False).numpy()
    core = got[:, factor : -factor, factor : -factor]  # the reference drops its 1-pixel halo
    assert (core == 0).sum() > 0
    np.testing.assert_array_equal(core == 0, ref == 0)
    np.testing.assert_array_equal(core, ref)
    scl = rng.integers(0, 12, (2, 5, 4)).astype(np.uint8)
    np.testing.assert_array_equal(enlarge(torch.from_numpy(scl).to(torch.int32), factor, None, True).numpy(),
                                  scl.repeat(factor, 1).repeat(factor, 2))


@pytest.mark.parametrize("factor", [2, 3, 6])
def test_an_enlarged_pixel_has_the_same_value_in_any_window(factor):
    """Blocks and windows start anywhere on the coarse grid: a pixel's enlarged value must not
    depend on where its window starts (float weights from the absolute index would)."""
    import torch

    from cloudfree.reconstruct.model_reads import enlarge

    rng = np.random.default_rng(factor)
    a = rng.integers(1, 12000, (2, 40, 40)).astype(np.int32)
    whole = enlarge(torch.from_numpy(a), factor, 0, nearest=False).numpy()
    for y0, x0 in ((1, 1), (7, 3), (13, 29)):
        part = enlarge(torch.from_numpy(a[:, y0:, x0:].copy()), factor, 0, nearest=False).numpy()
        inner = part[:, factor : -factor, factor : -factor]  # away from the window's own edges
        np.testing.assert_array_equal(inner, whole[:, (y0 + 1) * factor : -factor, (x0 + 1) * factor : -factor])


def _run(tmp_path, name, **kw):
    args = dict(bands="B02,B03,B04,B05,B08,B11", device="cpu", echo=lambda s: None)
    return cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / name, **{**args, **kw})


def test_streamed_block_reads_equal_the_stored_cube_and_any_tiling(tmp_path, monkeypatch):
    """Real series, 20 m bands and SCL enlarged on the device: the model's picture and the clear
    counts equal, value for value, the run through cube.zarr (``--keep-cube``), and tiles of 24 and 40 px agree, in
    one stripe of blocks, in stripes one block wide (each reading its neighbours' edges) or in
    panels of one block row, each its own graph."""
    from cloudfree.reconstruct import model_reads as streamed

    stored = _run(tmp_path, "cube", chunk=40, stream=False)
    a = _run(tmp_path, "stream40", chunk=40, stream=True)
    _run(tmp_path, "stream24", chunk=24, stream=True)
    monkeypatch.setattr(streamed, "STRIPE", 1)
    _run(tmp_path, "stripes24", chunk=24, stream=True)
    monkeypatch.setattr(streamed, "STRIPE", 2)
    monkeypatch.setattr(streamed, "PANEL_ROWS", 1)
    _run(tmp_path, "panels24", chunk=24, stream=True)
    assert stored["block_reads"] is None and a["cube"] is None
    assert {g["factor"] for g in a["block_reads"]} == {1, 2}
    assert ["SCL"] == [n for g in a["block_reads"] if g["factor"] == 2 for n in g["names"] if n == "SCL"]
    open_ = lambda n: xr.open_zarr(tmp_path / n / "mosaic.zarr")  # noqa: E731
    ref, sa, sb = open_("cube"), open_("stream40"), open_("stream24")
    np.testing.assert_array_equal(sa["clear_count"].values, ref["clear_count"].values)
    assert ref["clear_count"].values.min() < ref["clear_count"].values.max()
    x, y = sa["reflectance"].values, ref["reflectance"].values
    np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
    assert np.isfinite(x).mean() > 0.9
    np.testing.assert_array_equal(x, y)  # one request, one picture: the same kernel and decode on both paths
    np.testing.assert_allclose(sb["reflectance"].values, x, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(open_("stripes24")["reflectance"].values, sb["reflectance"].values)
    np.testing.assert_array_equal(open_("panels24")["reflectance"].values, sb["reflectance"].values)
    np.testing.assert_array_equal(open_("panels24")["clear_count"].values, sb["clear_count"].values)


def test_a_panel_of_the_streamed_graph_needs_nothing_of_the_others(monkeypatch):
    """A panel is a graph of its own: culled to its output blocks, the graph holds its own model
    tasks and the reads around it, and no task of another panel (so the scheduler is given one
    panel at a time, whatever the area)."""
    from cloudfree import search
    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.block_reads import block_reads
    from cloudfree.models.checkpoint import default_weights
    from cloudfree.models.pixel import CONTEXT
    from cloudfree.reconstruct import model_reads as streamed
    from cloudfree.reconstruct.periods import make_periods
    from cloudfree.reconstruct.dataset import departure_reach
    from cloudfree.reconstruct.tiles import TileConfig

    monkeypatch.setattr(streamed, "STRIPE", 2)
    monkeypatch.setattr(streamed, "PANEL_ROWS", 1)
    items = search(bundled_catalog(), "2019-08-01", "2019-09-30")
    src = block_reads(items, None, CubeSpec(chunk=24, bands=("B02", "B03", "B04", "B05", "B08", "B11")))
    times = np.array([d[0].datetime.replace(tzinfo=None) for d in src.days], dtype="datetime64[ns]")
    (period,) = make_periods(times, "2019-08-01", "2019-09-30", None, 30, 12)
    model = default_weights()
    arr = streamed.model_from_reads(src, period, model, TileConfig(device="cpu"), dt=np.zeros(len(period.dates), np.float32),
                                  margin=CONTEXT, reach=departure_reach(model))
    assert arr.numblocks[1:] == (3, 3)  # 64 x 64 px in blocks of 24: panels of 2 x 1 blocks
    graph = arr.__dask_graph__()

    def blocks(keys, kind):
        return {tuple(int(v) for v in k.split("-")[4:6]) if kind == "read" else tuple(int(v) for v in k.split("-")[-3:-1])
                for k in keys if isinstance(k, str) and k.startswith(f"cloudfree-{kind}-")}

    from cloudfree.zarrstore import _culled

    big, (ny, nx) = CONTEXT + src.dilate, src.shape

    def around(i, j):  # the blocks whose reads the margin of block (i, j) overlaps, on any grid
        y0, x0 = i * 24, j * 24
        return {b for g in range(len(src.grids))
                for b in src.blocks_for(g, *src.window(g, y0 - big, min(y0 + 24, ny) + big, x0 - big, min(x0 + 24, nx) + big))}

    total = set(dict(graph))
    for outputs in ([(0, 0), (0, 1)], [(1, 2)]):
        keys = set(dict(_culled(graph, {(arr.name, 0, i, j) for i, j in outputs})))  # what write_by_regions sends
        assert blocks(keys, "predict") == set(outputs)
        assert blocks(keys, "read") == set().union(*(around(i, j) for i, j in outputs))
        assert len(keys) < len(total) / 2


def test_a_streamed_run_writes_out_each_panels_tasks_once_and_never_the_areas(tmp_path, monkeypatch):
    """The driver holds one panel's tasks at a time, not the area's (at least 27 KiB a
    block: about 4.7 GiB for a 100-tile region in 256 px blocks): every panel of every period is written
    out exactly once, and nothing asks for the whole graph."""
    from collections import Counter

    from cloudfree.reconstruct import model_reads as streamed

    monkeypatch.setattr(streamed, "STRIPE", 2)
    monkeypatch.setattr(streamed, "PANEL_ROWS", 1)
    built: Counter = Counter()
    made = streamed.ReadsLayer.panel_tasks

    def counted(self, panel):
        built[self.name, panel] += 1
        return made(self, panel)

    def whole(self):
        raise AssertionError("the whole area's tasks were asked for")

    monkeypatch.setattr(streamed.ReadsLayer, "panel_tasks", counted)
    monkeypatch.setattr(streamed.ReadsLayer, "_all", whole)
    res = _run(tmp_path, "run", chunk=24, stream=True)
    assert res["status"] == "complete"
    periods = {name for name, _ in built}
    assert len(periods) == len(res["periods"]) >= 1
    assert sorted(built.values()) == [1] * 6 * len(periods)  # 64 px in 24 px blocks: 2 x 3 panels of 2 x 1 blocks


def test_finished_blocks_are_written_before_more_is_read(tmp_path):
    """Reads yield to everything else (``READ_PRIORITY``): a block the model has finished is
    written before the next reads start, so a worker holds the reads in flight and about a
    stripe's row of finished blocks (whose outputs wait for their neighbours), not a panel's
    worth. On one thread, 64 blocks of 8 px in one stripe: 7-9 blocks finished but not yet
    written at most, at any task's start (the scheduler's messages add a little jitter); 21-23
    when reads keep the default priority."""
    from distributed import Client, LocalCluster, get_task_stream

    from cloudfree.reconstruct.model_reads import STRIPE

    ch = 8
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as client, get_task_stream(client) as ts:
        _run(tmp_path, "run", chunk=ch, stream=True)
    events = []
    for t in ts.data:
        compute = [s for s in t["startstops"] if s["action"] == "compute"]
        if compute and isinstance(t["key"], str):
            events.append((compute[0]["start"], compute[0]["stop"], t["key"]))
    finished = {tuple(int(v) for v in k.split("-")[-3:-1]): stop for _, stop, k in events
                if k.startswith("cloudfree-predict-")}
    writes = {k: start for start, _, k in events if k.startswith("cloudfree-region-write-")}
    assert len(finished) == len(writes) == 64
    written = {(i, j): min(s for k, s in writes.items() if f"y{i * ch}-" in k and f"x{j * ch}-" in k)
               for i, j in finished}
    held = [sum(done <= start < written[b] for b, done in finished.items()) for start, _, _ in events]
    assert 0 < max(held) <= STRIPE + 4, max(held)


def test_streamed_60m_bands_and_a_grown_mask_equal_the_stored_cube(demo_items, demo_bbox, tmp_path):
    """SYNTHETIC, all 12 bands: B01/B09 at 60 m (enlarged 6x) and SCL grown by 2 px on the device."""
    kw = dict(bbox=demo_bbox, device="cpu", echo=lambda s: None, dilate=2, chunk=48, method="model")
    ref = cloudfree.run(str(demo_items), "2024-04-01", "2024-05-15", tmp_path / "cube", stream=False, **kw)
    got = cloudfree.run(str(demo_items), "2024-04-01", "2024-05-15", tmp_path / "stream", stream=True, **kw)
    assert {g["factor"] for g in got["block_reads"]} == {1, 2, 6} and ref["method"] == "model"
    r, s = (xr.open_zarr(tmp_path / n / "mosaic.zarr") for n in ("cube", "stream"))
    np.testing.assert_array_equal(s["clear_count"].values, r["clear_count"].values)
    x, y = s["reflectance"].values, r["reflectance"].values
    np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
    assert np.nanmean(np.abs(x - y)) < 2e-5 and np.nanmax(np.abs(x - y)) < 5e-3


def test_direct_window_reads_equal_odc_stac_reads(shared_data):
    """Local files on the grid's lattice are read as plain rasterio windows: the very values
    odc-stac reads, for blocks inside, at the edges and past the items' extent."""
    from dataclasses import replace

    from cloudfree import search
    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.block_reads import block_reads

    cat = shared_data / "real-s2-l2a" / "catalog.json"
    items = search(str(cat), "2018-08-01", "2018-09-15", collection="worldcereal_0000280849BAC91C")
    from cloudfree.aoi import parse_bbox

    src = block_reads(items, parse_bbox("4.0596,50.7440,4.0665,50.7482"), CubeSpec(chunk=24))
    assert all(g.direct for g in src.grids) and {g.factor for g in src.grids} == {1, 2}
    via_odc = replace(src, grids=tuple(replace(g, direct=False) for g in src.grids))
    ny, nx = (-(-n // 24) for n in src.shape)
    for t in (0, len(src.days) - 1):
        for i, j in ((0, 0), (ny - 1, nx - 1), (0, nx - 1)):
            for a, b in zip(src.read(t, i, j), via_odc.read(t, i, j)):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)


def test_cog_tiles_are_compressed_while_the_zarr_is_written(tmp_path, monkeypatch):
    """Every region's COG tiles are compressed beside its write, before the mosaic is finished;
    the COG read back as users read it equals the Zarr, and its overviews are the means of it."""
    import rasterio
    import rioxarray

    from cloudfree.outputs.cog import CogPlan

    done_before_finish = []
    finish = CogPlan.finish

    def spy(self, read, meta, threads=None):
        done_before_finish.append(len(self.regions()) - len(self.missing()))
        return finish(self, read, meta, threads)

    monkeypatch.setattr(CogPlan, "finish", spy)
    res = _run(tmp_path, "run", chunk=24)
    assert done_before_finish == [9]  # 64 x 64 px in blocks of 24: all 9 compressed during the run
    (files_,) = res["periods"].values()
    assert not list((tmp_path / "run").glob("*.parts"))  # assembled, then the parts removed
    cog = rioxarray.open_rasterio(files_["cog"], mask_and_scale=True)
    zarr = xr.open_zarr(tmp_path / "run" / "mosaic.zarr")["reflectance"].isel(time=0)
    np.testing.assert_allclose(cog.values, zarr.values, atol=5.1e-5, equal_nan=True)
    with rasterio.open(files_["cog"]) as src:
        assert src.overviews(1) == [2, 4] and src.tags()["period"] == str(res["periods"].popitem()[0])
        half = src.read(out_shape=(src.count, 32, 32)) * 1e-4
    mean = zarr.coarsen(y=2, x=2).mean().values  # 2x2 means of the valid pixels
    np.testing.assert_allclose(np.where(half > 0, half, np.nan), mean, atol=1.1e-4, equal_nan=True)


@pytest.mark.parametrize("method", ["median", "interpolation"])
def test_a_streamed_composite_reads_blocks_and_equals_the_stored_cube(tmp_path, method):
    """``--method median`` (and the other per-pixel composites) streams like the model: block reads,
    memory flat in the area, and the picture of the run through cube.zarr, value for value."""
    kw = dict(method=method, chunk=40, dilate=1, period="month", context_days=20)
    stored = _run(tmp_path, "cube", stream=False, **kw)
    streamed = _run(tmp_path, "stream", stream=True, **kw)
    assert stored["block_reads"] is None and streamed["block_reads"] is not None and streamed["cube"] is None
    a, b = (xr.open_zarr(tmp_path / n / "mosaic.zarr").load() for n in ("stream", "cube"))
    assert a.sizes["time"] == 2 and np.isfinite(a["reflectance"].values).mean() > 0.9
    np.testing.assert_array_equal(a["reflectance"].values, b["reflectance"].values)
    np.testing.assert_array_equal(a["clear_count"].values, b["clear_count"].values)


def test_a_streamed_run_validates_on_the_stored_cube_values(tmp_path):
    """Validation windows of a streamed run are read and decoded as its blocks are: equal, value
    for value and flag for flag, to the same windows of the stored cube (``--keep-cube``), at the
    image's edges too, so both runs measure the same candidates and choose the same recipes."""
    import dask

    from cloudfree.cube.block_reads import block_reads
    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.store import open_cube
    from cloudfree.reconstruct.reads_numpy import window_reader_from_reads

    stored = _run(tmp_path, "cube", chunk=40, stream=False)
    streamed = _run(tmp_path, "stream", chunk=40, stream=True)
    assert streamed["validation"] and streamed["validation"] == stored["validation"]
    cube = open_cube(tmp_path / "cube" / "cube.zarr")
    days = [str(v)[:10] for v in cube.time.values[[0, -1]]]  # the run's dates: its period and context days
    items = cloudfree.search(bundled_catalog(), *days)
    src = block_reads(items, None, CubeSpec(chunk=40, bands=("B02", "B03", "B04", "B05", "B08", "B11")),
                      times=cube.time.values)
    read = window_reader_from_reads(src, cube.time.values)
    part = cube["clear"].mean(("y", "x")).values
    dates = [int(t) for t in np.nonzero((part > 0.05) & (part < 0.95))[0][:3]] + [0]  # partly cloudy ones: edges of masks
    assert len(dates) == 4
    wins = [(slice(5, 37), slice(21, 64)), (slice(0, 64), slice(0, 64)), (slice(33, 34), slice(0, 9))]
    got = dask.compute(*[read(ys, xs, dates) for ys, xs in wins], scheduler="sync")
    for (ys, xs), ds in zip(wins, got):
        ref = cube.isel(time=dates, y=ys, x=xs)
        np.testing.assert_array_equal(ds["reflectance"].values, ref["reflectance"].values)
        np.testing.assert_array_equal(ds["clear"].values, ref["clear"].values)
        assert 0 < ds["clear"].values.mean() < 1 or ds["clear"].size < 100  # clouds and their dilated edges inside
