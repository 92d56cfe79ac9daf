"""End to end on the demo STAC API: cube → tiled inference → Zarr/COG/PNG/STAC, seams, resume, flags."""

import json

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr

from cloudfree.aoi import parse_bbox
from cloudfree.reconstruct.composites import median_composite
from cloudfree.cube.load import CubeSpec, open_cube
from cloudfree.reconstruct.images import period_images
from cloudfree.reconstruct.periods import make_periods
from cloudfree.reconstruct.tiles import TileConfig
from cloudfree.pipeline import JobConfig, run_job
from cloudfree.catalog.search import SearchRequest

TILES = TileConfig(patch=32, overlap=4, batch=16, device="cpu")


@pytest.fixture(scope="module")
def req(demo_bbox):
    return SearchRequest(parse_bbox(demo_bbox), "2024-04-01", "2024-06-30")


@pytest.fixture(scope="module")
def tiled_run(stac_url, req, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_tiled")
    logs: list[str] = []
    manifest = run_job(stac_url, req, CubeSpec(chunk=40), out, JobConfig(tiles=TILES, context_days=20), echo=logs.append)
    return out, manifest, logs


def test_outputs_open_with_crs_bounds_resolution(tiled_run):
    out, manifest, _ = tiled_run
    assert manifest["status"] == "complete" and (out / "run.json").exists()
    ds = xr.open_zarr(out / "mosaic.zarr")
    cube = open_cube(out / "cube.zarr")
    assert ds.rio.crs.to_epsg() == 32633 and ds.rio.resolution() == (10.0, -10.0)
    assert ds.odc.geobox == cube.odc.geobox
    # the cube was searched with the period widened by context_days (20) on both sides
    assert cube.time.values.min() < np.datetime64("2024-04-01")  # the test catalog ends on 2024-06-19
    assert list(ds.band.values) == list(cube.band.values)
    refl = ds["reflectance"].values
    flag = ds["no_clear"].values.astype(bool)
    assert refl.dtype == np.float32 and refl.shape[0] == 1
    ok = ~flag[:, None].repeat(12, 1)
    assert np.isfinite(refl[ok]).all() and np.isnan(refl[~ok]).all()
    assert -0.1 <= np.nanmin(refl) and np.nanmax(refl) < 1.5
    (label, files), = manifest["periods"].items()
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _ = cog_validate(files["cog"])
    assert valid, errors
    with rasterio.open(files["cog"]) as src:
        assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0) and src.count == 12 and src.nodata == 0
        assert src.overviews(1), "COG has no overviews"
        b = ds.odc.geobox.extent.boundingbox
        assert src.bounds == pytest.approx((b.left, b.bottom, b.right, b.top))
        dn = src.read(4)
        np.testing.assert_allclose(np.where(dn > 0, dn * 1e-4, np.nan), refl[0, 3], atol=6e-5, equal_nan=True)
    item = pystac.Item.from_file(files["stac_item"])
    assert item.properties["proj:code"] == "EPSG:32633" and item.properties["cloudfree:synthetic_input"] is True
    assert set(item.assets) == {"zarr", "reflectance", "quicklook", "uncertainty"}
    from PIL import Image

    png = np.asarray(Image.open(files["quicklook"]).convert("RGB"))
    assert png.shape[:2] == (ds.sizes["y"], ds.sizes["x"])
    banner = png[:3]  # SYNTHETIC inputs: a red banner across the top says so
    assert ((banner[..., 0] == 200) & (banner[..., 1] == 0)).mean() > 0.5
    from cloudfree.outputs import rgb_image

    ref = rgb_image(ds["reflectance"].isel(time=0))  # the picture of the Zarr; the PNG comes from the COG
    below = slice(max(12, png.shape[0] // 12) + 1, None)
    assert np.abs(png[below].astype(int) - ref[below].astype(int)).max() <= 2


def test_tiled_equals_single_tile(tiled_run):
    from cloudfree.pipeline import default_weights

    out, _, _ = tiled_run
    cube = open_cube(out / "cube.zarr")
    periods = make_periods(cube.time.values, "2024-04-01", "2024-06-30", None, 20, 12)
    kw = dict(model_path=str(default_weights()), tiles=TILES)
    tiled = period_images(cube, periods, chunk=40, **kw)
    single = period_images(cube, periods, chunk=4096, **kw)
    assert len(tiled.chunks["y"]) > 1 and len(single.chunks["y"]) == 1  # really tiled differently
    a, b = tiled["reflectance"].values, single["reflectance"].values
    np.testing.assert_allclose(a, b, atol=1e-5, equal_nan=True)
    # and the stored mosaic is that same picture
    np.testing.assert_allclose(xr.open_zarr(out / "mosaic.zarr")["reflectance"].values, b, atol=1e-5, equal_nan=True)


def test_rerun_reuses_cube_and_mosaic(tiled_run, stac_url, req):
    out, _, _ = tiled_run
    logs: list[str] = []
    run_job(stac_url, req, CubeSpec(chunk=40), out, JobConfig(tiles=TILES, context_days=20), echo=logs.append)
    assert any(line.startswith("cube reused") for line in logs)
    assert any(line.startswith("mosaic reused") for line in logs)


def test_killed_run_restarts_to_the_same_output(tiled_run, stac_url, req, tmp_path):
    out, _, _ = tiled_run
    job = JobConfig(tiles=TILES, context_days=20)
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=lambda s: None, stop_after=2)
    assert res["status"] == "interrupted" and not (tmp_path / "run.json").exists()
    with pytest.raises(Exception, match="incomplete"):
        open_cube(tmp_path / "mosaic.zarr")
    logs: list[str] = []
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=logs.append)
    assert res["status"] == "complete" and any(line.startswith("mosaic resumed") for line in logs)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "mosaic.zarr")["reflectance"].values,
                                  xr.open_zarr(out / "mosaic.zarr")["reflectance"].values)


def test_a_resume_redoes_done_regions_whose_chunks_were_deleted_or_damaged(tiled_run, stac_url, req, tmp_path):
    import json as _json

    from cloudfree.zarrstore import _progress_dir

    out, _, _ = tiled_run
    job = JobConfig(tiles=TILES, context_days=20)
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=lambda s: None, stop_after=2)
    assert res["status"] == "interrupted"
    markers = sorted(_progress_dir(tmp_path / "mosaic.zarr").iterdir())
    assert len(markers) == 2
    chunks = [[f for f, st in _json.loads(m.read_text()).items() if st and "/reflectance/" in f][0] for m in markers]
    from pathlib import Path as _P

    _P(chunks[0]).unlink()  # a done region's chunk deleted
    raw = bytearray(_P(chunks[1]).read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # and another's with a flipped byte
    _P(chunks[1]).write_bytes(bytes(raw))
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=lambda s: None)
    assert res["status"] == "complete"
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "mosaic.zarr")["reflectance"].values,
                                  xr.open_zarr(out / "mosaic.zarr")["reflectance"].values)


def test_median_method_matches_numpy_baseline(stac_url, req, tmp_path):
    run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, JobConfig(method="median", context_days=20), echo=lambda s: None)
    cube = open_cube(tmp_path / "cube.zarr")
    (p,) = make_periods(cube.time.values, req.start, req.end, None, 20, 12)
    x = cube["reflectance"].isel(time=list(p.dates)).values
    c = cube["clear"].isel(time=list(p.dates)).values.astype(bool)
    exp = median_composite(x, c, cube.time.values[list(p.dates)].astype("datetime64[D]").astype(float), p.target_day)
    exp[:, ~(c & np.isfinite(x).all(1)).any(0)] = np.nan
    got = xr.open_zarr(tmp_path / "mosaic.zarr")["reflectance"].isel(time=0).values
    np.testing.assert_allclose(got, exp, atol=1e-6, equal_nan=True)


def _toy_cube(never_clear=(5, 7)):
    rng = np.random.default_rng(0)
    t, c, h, w = 4, 12, 40, 40
    x = rng.uniform(0.02, 0.4, (t, c, h, w)).astype(np.float32)
    clear = np.ones((t, h, w), np.uint8)
    clear[:, never_clear[0], never_clear[1]] = 0
    times = np.array(["2024-05-01", "2024-05-11", "2024-05-21", "2024-05-31"], "datetime64[ns]")
    from cloudfree.bands import L2A_BANDS

    return xr.Dataset({"reflectance": (("time", "band", "y", "x"), x), "clear": (("time", "y", "x"), clear)},
                      coords={"time": times, "band": list(L2A_BANDS), "y": np.arange(h) * -10.0, "x": np.arange(w) * 10.0}
                      ).chunk({"time": 1, "y": 20, "x": 20})


def test_never_clear_pixel_is_flagged_not_invented():
    from cloudfree.pipeline import default_weights

    cube = _toy_cube()
    periods = make_periods(cube.time.values, "2024-05-01", "2024-05-31")
    ds = period_images(cube, periods, model_path=str(default_weights()), tiles=TILES, chunk=20).compute()
    assert ds["no_clear"].values[0, 5, 7] == 1 and ds["no_clear"].values.sum() == 1
    assert ds["clear_count"].values[0, 5, 7] == 0 and ds["clear_count"].values[0, 0, 0] == 4
    assert np.isnan(ds["reflectance"].values[0, :, 5, 7]).all()
    assert np.isfinite(ds["reflectance"].values[0, :, 6, 7]).all()
    filled = period_images(cube, periods, model_path=str(default_weights()), tiles=TILES, chunk=20, keep_guess=True).compute()
    assert np.isfinite(filled["reflectance"].values[0, :, 5, 7]).all() and filled["no_clear"].values[0, 5, 7] == 1


def test_monthly_periods():
    times = np.arange(np.datetime64("2024-01-03"), np.datetime64("2024-04-30"), np.timedelta64(5, "D"))
    ps = make_periods(times, "2024-01-01", "2024-03-31", "month", context_days=0, max_dates=20)
    assert [p.label for p in ps] == ["2024-01", "2024-02", "2024-03"]
    for p in ps:
        d = times[list(p.dates)]
        assert (d >= p.start).all() and (d <= p.end).all()
    with pytest.raises(ValueError, match="no acquisitions"):
        make_periods(times, "2025-01-01", "2025-01-31", context_days=5)


def test_cli_run_and_device_fallback(stac_url, demo_items, demo_bbox, tmp_path):
    import torch
    from typer.testing import CliRunner

    from cloudfree.cli import app

    args = ["run", "--stac", str(demo_items), "--bbox", demo_bbox, "--start", "2024-04-01", "--end", "2024-05-15",
            "--out", str(tmp_path), "--patch", "32", "--overlap", "4", "--chunk", "64", "--context-days", "10"]
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, args + ["--device", "cuda"])
        assert r.exit_code == 2 and "no CUDA GPU" in " ".join(r.output.split())
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "complete"
    bad = [a if a != str(tmp_path) else str(tmp_path / "x") for a in args] + ["--model", str(demo_items)]
    r = CliRunner().invoke(app, bad)
    assert r.exit_code == 2 and "not a safetensors file" in " ".join(r.output.split())


def test_pipeline_configs_parse():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("regional_mosaic", root / "pipelines" / "regional_mosaic.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for cfg in (root / "pipelines" / "configs").glob("*.yaml"):
        c = mod.load_config(cfg)
        assert {"stac", "start", "end", "out"} <= set(c) and ("bbox" in c or "aoi" in c)
        TileConfig(**{k: v for k, v in c.get("tiles", {}).items()})
        req = mod.request(c)  # the same parsing and checks as `cloudfree run`
        assert req.stac == c["stac"] and req.aoi is not None and req.period == c.get("period")


def test_streaming_run_equals_the_cube_run_and_resumes(tiled_run, stac_url, req, tmp_path):
    """--stream computes from the assets without cube.zarr: the same picture as through the stored
    cube (which the model reads as uint16 DN decoded on its device), interrupted and resumed per
    output block, reused on a re-run."""
    out, _, _ = tiled_run
    job = JobConfig(tiles=TILES, context_days=20, stream=True)
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=lambda s: None, stop_after=2)
    assert res["status"] == "interrupted"
    logs: list[str] = []
    res = run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=logs.append)
    assert res["status"] == "complete" and res["streamed"] and res["cube"] is None
    assert not (tmp_path / "cube.zarr").exists()
    assert any(line.startswith("mosaic resumed") for line in logs)
    assert any(line.startswith("size:") and "no cube stored" in line for line in logs)  # says what it stores
    streamed = xr.open_zarr(tmp_path / "mosaic.zarr")["reflectance"].values
    stored = xr.open_zarr(out / "mosaic.zarr")["reflectance"].values
    assert np.isfinite(streamed).mean() > 0.5
    np.testing.assert_allclose(streamed, stored, atol=2e-4, equal_nan=True)
    logs = []
    run_job(stac_url, req, CubeSpec(chunk=40), tmp_path, job, echo=logs.append)
    assert any(line.startswith("mosaic reused") for line in logs)


def test_streamed_run_names_dates_whose_items_miss_the_area(demo_items, demo_bbox):
    """A streamed run reads no cube first, so each date is sampled coarsely over the area through
    the items' own projection metadata: an item with a wrong EPSG is named, the others are not."""
    from cloudfree.catalog.sources import read_static_items
    from cloudfree.cube.store import lazy_cube
    from cloudfree.pipeline import _dates_sampled_without_data

    items = read_static_items(str(demo_items))[:4]
    far = items[2]
    for obj in [far, *far.assets.values()]:
        props = obj.properties if hasattr(obj, "properties") else obj.extra_fields
        for k in ("proj:code", "proj:epsg"):
            if k in props:
                props[k] = "EPSG:32610" if k == "proj:code" else 32610  # a zone on the other side of the world
    req = SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-04-01")
    spec = CubeSpec(chunk=40)
    cube = lazy_cube(items, req, spec)
    no_data, seen, _ = _dates_sampled_without_data(items, cube, spec.resolved(items))
    assert no_data == [str(far.datetime.date())] and seen > 0


def test_streamed_template_cube_is_the_cubes_shape_with_nothing_behind_it(demo_items, demo_bbox):
    """A streamed run with block reads holds only a template of the cube: the same coordinates,
    attributes, dtypes and chunks, a graph that does not grow with the number of blocks (odc-stac's
    did, task by task, for the whole run), and blocks that raise if anything computes them."""
    from cloudfree.catalog.sources import read_static_items
    from cloudfree.cube.store import lazy_cube

    items = read_static_items(str(demo_items))[:4]
    req = SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-04-01")
    tasks = {}
    for chunk in (40, 20):
        spec = CubeSpec(chunk=chunk)
        full = lazy_cube(items, req, spec)
        tmpl = lazy_cube(items, req, spec, template=True)
        xr.testing.assert_identical(full.coords.to_dataset(), tmpl.coords.to_dataset())
        assert tmpl.attrs == full.attrs
        for v in full.data_vars:
            assert (tmpl[v].dims, tmpl[v].dtype, tmpl[v].chunks, repr(tmpl[v].attrs)) == \
                   (full[v].dims, full[v].dtype, full[v].chunks, repr(full[v].attrs)), v  # repr: nan == nan
        tasks[chunk] = (len(dict(full["reflectance"].data.__dask_graph__())),
                        len(tmpl["reflectance"].data.__dask_graph__().layers))
    assert tasks[20][0] > 2 * tasks[40][0]  # the full cube's graph grows with the blocks...
    assert tasks[20][1] == tasks[40][1] <= 2  # ...the template's is two layers whatever the blocks
    with pytest.raises(RuntimeError, match="never read"):
        tmpl["reflectance"].isel(time=0, band=0, y=slice(0, 5), x=slice(0, 5)).values


def _three_months(hidden=(5, 7)):
    rng = np.random.default_rng(1)
    days = ["2024-04-05", "2024-04-20", "2024-05-05", "2024-05-20", "2024-06-05", "2024-06-20"]
    x = rng.uniform(0.02, 0.4, (len(days), 4, 12, 12)).astype(np.float32)
    clear = np.ones((len(days), 12, 12), np.uint8)
    clear[2:4, hidden[0], hidden[1]] = 0  # never clear in May
    clear[:, 0, 0] = 0  # never clear at all
    return xr.Dataset({"reflectance": (("time", "band", "y", "x"), x), "clear": (("time", "y", "x"), clear)},
                      coords={"time": np.array(days, "datetime64[ns]"), "band": ["B02", "B03", "B04", "B08"],
                              "y": np.arange(12) * -10.0, "x": np.arange(12) * 10.0}).chunk({"time": 1, "y": 6, "x": 6})


def test_unobserved_pixels_take_the_neighbouring_periods_values():
    """A pixel never clear in May but clear in April and June gets, by default, the value
    interpolated in time between April's and June's images, flagged in `filled`; a pixel never
    clear at all stays NaN; fill_unobserved=False leaves May's pixel NaN."""
    from cloudfree.reconstruct.dataset import reconstruct
    from cloudfree.reconstruct.selfcheck import ValidationConfig

    kw = dict(period="month", method="median", context_days=0, validation=ValidationConfig(enabled=False))
    ds = reconstruct(_three_months(), "2024-04-01", "2024-06-30", **kw).compute()
    assert list(ds.period.values) == ["2024-04", "2024-05", "2024-06"]
    refl, filled = ds["reflectance"].values, ds["filled"].values
    days = ds.time.values.astype("datetime64[D]").astype(float)
    w_april = (days[2] - days[1]) / (days[2] - days[0])
    expected = w_april * refl[0, :, 5, 7] + (1 - w_april) * refl[2, :, 5, 7]
    np.testing.assert_allclose(refl[1, :, 5, 7], expected, rtol=1e-6)
    assert filled[1, 5, 7] == 1 and ds["no_clear"].values[1, 5, 7] == 1
    assert np.isnan(refl[:, :, 0, 0]).all() and (filled[:, 0, 0] == 0).all()  # nothing to widen to
    assert filled.sum() == 1 and np.isfinite(refl[:, :, 1:, 1:]).all()
    kept = reconstruct(_three_months(), "2024-04-01", "2024-06-30", fill_unobserved=False, **kw).compute()
    assert np.isnan(kept["reflectance"].values[1, :, 5, 7]).all() and kept["filled"].values.sum() == 0
    np.testing.assert_array_equal(np.isnan(kept["reflectance"].values), np.isnan(refl) | (filled[:, None] == 1))


def test_gap_interpolation_one_side_and_none():
    from cloudfree.reconstruct.unobserved import interpolate_gaps

    x = np.array([[1.0, np.nan, 3.0, np.nan], [np.nan, np.nan, np.nan, np.nan], [np.nan, 2.0, np.nan, np.nan]])
    seen = np.isfinite(x)
    out, filled = interpolate_gaps(x, seen, np.array([0.0, 10.0, 30.0, 40.0]))
    np.testing.assert_allclose(out[0], [1.0, 1.0 + 2.0 * 10 / 30, 3.0, 3.0])  # between, then one side only
    assert np.isnan(out[1]).all() and not filled[1].any()
    np.testing.assert_allclose(out[2], [2.0, 2.0, 2.0, 2.0])
    assert filled.tolist() == [[False, True, False, True], [False] * 4, [True, False, True, True]]
