import json

import numpy as np
import pytest
import xarray as xr

from cloudfree.aoi import parse_bbox
from cloudfree.bands import L2A_BANDS
from cloudfree.cube.load import CubeSpec, load_cube, open_cube
from cloudfree.cube.store import build_cube
from cloudfree.catalog.search import SearchRequest, search
from cloudfree.zarrstore import StoreError

from .conftest import demo_pixel


@pytest.fixture(scope="module")
def request_(demo_bbox):
    return SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-05-31")


@pytest.fixture(scope="module")
def lazy_cube(stac_url, request_):
    items = search(stac_url, request_)
    return load_cube(items, request_.aoi, CubeSpec(chunk=48))


def test_cube_shape_crs_resolution_band_order(lazy_cube):
    ds = lazy_cube
    assert ds["reflectance"].dims == ("time", "band", "y", "x")
    assert list(ds.band.values) == list(L2A_BANDS)
    assert ds.sizes["time"] == 10
    assert ds.rio.crs.to_epsg() == 32633
    assert ds.odc.geobox.resolution.x == 10 and ds.odc.geobox.resolution.y == -10
    assert ds["reflectance"].dtype == np.float32
    assert ds["reflectance"].chunks is not None  # lazy
    assert json.loads(ds.attrs["synthetic"]) is True


def test_cube_values_and_mask_at_known_pixels(lazy_cube, demo_scene):
    ds = lazy_cube
    t = 4
    day = str(ds.time.values[t])[:10]
    ts = [str(d) for d in demo_scene.dates].index(day)
    rng = np.random.default_rng(0)
    ys = rng.integers(0, ds.sizes["y"], 20)
    xs = rng.integers(0, ds.sizes["x"], 20)
    refl = ds["reflectance"].isel(time=t).sel(band="B04").values
    clear = ds["clear"].isel(time=t).values
    scl = ds["scl"].isel(time=t).values
    all_bands = np.isfinite(ds["reflectance"].isel(time=t).values).all(0)
    for iy, ix in zip(ys, xs):
        r, c = demo_pixel(float(ds.x[ix]), float(ds.y[iy]))
        truth = demo_scene.observed[ts, 3, r, c]
        exp_scl = demo_scene.scl[ts][::2, ::2][r // 2, c // 2]
        assert scl[iy, ix] == exp_scl
        if np.isfinite(truth):
            # processing baseline 05.10: DN = refl * 10000 + 1000 → the offset must be removed
            assert refl[iy, ix] == pytest.approx(truth, abs=1.5e-4)
        # clear = usable SCL class and data in every band (60 m bands reach further into nodata edges)
        assert clear[iy, ix] == (exp_scl not in (0, 1, 3, 8, 9, 10) and all_bands[iy, ix])
    assert 0.2 < clear.mean() < 1.0


def test_zarr_roundtrip_reuse_and_mismatch(stac_url, request_, lazy_cube, tmp_path):
    out = tmp_path / "cube.zarr"
    res = build_cube(stac_url, request_, CubeSpec(chunk=48), out)
    assert res.status == "written"
    back = xr.open_zarr(out)  # plain open: CRS must survive
    assert back.rio.crs.to_epsg() == 32633
    ds = open_cube(out)
    assert ds.odc.geobox == lazy_cube.odc.geobox
    a = ds["reflectance"].isel(time=3).values
    b = lazy_cube["reflectance"].isel(time=3).values
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1.1e-4  # uint16 with scale 1e-4 on disk
    assert np.array_equal(ds["clear"].values, lazy_cube["clear"].values)
    assert build_cube(stac_url, request_, CubeSpec(chunk=48), out).status == "reused"
    other = SearchRequest(request_.aoi, "2024-03-01", "2024-04-30")
    with pytest.raises(StoreError, match="different request"):
        build_cube(stac_url, other, CubeSpec(chunk=48), out)


def test_interrupted_cube_resumes(stac_url, request_, tmp_path):
    out = tmp_path / "cube.zarr"
    res = build_cube(stac_url, request_, CubeSpec(chunk=48), out, stop_after=1)
    assert res.status == "interrupted"
    with pytest.raises(StoreError, match="incomplete"):
        open_cube(out)
    res = build_cube(stac_url, request_, CubeSpec(chunk=48), out)
    assert res.status == "resumed"
    full = tmp_path / "full.zarr"
    build_cube(stac_url, request_, CubeSpec(chunk=48), full)
    np.testing.assert_array_equal(open_cube(out)["reflectance"].values, open_cube(full)["reflectance"].values)


def test_cube_cli_errors_before_heavy_work(tmp_path):
    from typer.testing import CliRunner

    from cloudfree.cli import app

    r = CliRunner().invoke(app, ["cube", "--stac", "http://127.0.0.1:9", "--bbox", "16,46,16.1,46.1", "--start",
                                 "2024-01-01", "--end", "2024-02-01", "--out", str(tmp_path / "c.zarr"), "--bands", "B04,B99"])
    assert r.exit_code == 2 and "B99" in r.output
    r = CliRunner().invoke(app, ["cube", "--stac", "http://127.0.0.1:9", "--bbox", "16,46,16.1", "--start",
                                 "2024-01-01", "--end", "2024-02-01", "--out", str(tmp_path / "c.zarr")])
    assert r.exit_code == 2 and "four numbers" in r.output


def _garble_tiles(path) -> None:
    """Overwrite every tile of a TIFF with bytes that do not decompress; the header stays valid."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        start = min(o for p in tif.pages for o in p.dataoffsets)
    raw = bytearray(path.read_bytes())
    raw[start:] = b"\xff" * (len(raw) - start)
    path.write_bytes(bytes(raw))


def test_corrupt_asset_is_a_clear_error_or_nodata(demo_items, request_, tmp_path):
    import shutil

    from cloudfree.cube.store import AssetReadError
    from cloudfree.catalog.serve import serve_stac

    cat = tmp_path / "catalog"
    shutil.copytree(demo_items.parent, cat)
    text = demo_items.read_text().replace(demo_items.parent.resolve().as_uri(), cat.resolve().as_uri())
    (cat / "items.json").write_text(text)
    bad = cat / "SYNTH_S2_L2A_32633_20240410" / "B04.tif"
    _garble_tiles(bad)  # a whole file whose tiles do not decode: only the pixel read can tell
    with serve_stac(cat / "items.json") as url:
        with pytest.raises(AssetReadError, match="B04.tif"):
            build_cube(url, request_, CubeSpec(chunk=48), tmp_path / "c.zarr")
        res = build_cube(url, request_, CubeSpec(chunk=48), tmp_path / "c2.zarr", skip_bad_assets=True)
    ds = open_cube(res.path)
    t = list(ds.time.dt.strftime("%Y-%m-%d").values).index("2024-04-10")
    assert ds["reflectance"].isel(time=t).sel(band="B04").isnull().all()
    assert (ds["clear"].isel(time=t) == 0).all()
    assert ds["clear"].isel(time=t + 1).sum() > 0


def test_mask_classes_are_configurable(stac_url, request_):
    from cloudfree.cube.load import MaskConfig

    _mask = MaskConfig.from_classes  # what --exclude-scl becomes
    items = search(stac_url, request_)
    strict = load_cube(items, request_.aoi, CubeSpec(chunk=48, mask=_mask("0,1,3,8,9,10")))
    loose = load_cube(items, request_.aoi, CubeSpec(chunk=48, mask=_mask("0,1,9")))  # thin clouds, shadows allowed
    s, lo = strict["clear"].values, loose["clear"].values
    assert (s <= lo).all() and lo.sum() > s.sum()
    scl = strict["scl"].values
    assert (lo[np.isin(scl, (3, 8, 10)) & (strict["reflectance"].notnull().all("band").values)] == 1).all()
    with pytest.raises(ValueError, match="unknown SCL classes"):
        _mask("0,42")


def _same_as_gdal_warp(items, aoi, **kw):
    from cloudfree.cube.load import band_mapping
    from cloudfree.cube.native import native_reads

    ours = load_cube(items, aoi, native_reads=True, **kw)
    gdal = load_cube(items, aoi, native_reads=False, **kw)
    assert ours.odc.geobox == gdal.odc.geobox
    names = list(band_mapping(items, tuple(str(b) for b in ours.band.values)).values())
    plans = native_reads(items, names, ours.odc.geobox)
    a, b = ours["reflectance"].values, gdal["reflectance"].values
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=1.01e-4, equal_nan=True)  # GDAL rounds to the DN, so do we
    assert np.nanmean(np.abs(a - b)) < 1e-5
    np.testing.assert_array_equal(ours["scl"].values, gdal["scl"].values)
    return plans


def test_coarse_bands_read_on_their_grid_equal_gdal_bilinear_warp(shared_data, stac_url, request_, demo_bbox):
    """20 m / 60 m bands and SCL read on their own grid and enlarged here give GDAL's warp (within
    its 1 DN rounding), for whole tiles and for AOIs whose grid is not the 20 m one's."""
    from cloudfree import search as find

    cat = shared_data / "real-s2-l2a" / "catalog.json"
    real = find(str(cat), "2018-08-01", "2018-10-15", collection="worldcereal_0000280849BAC91C")
    plans = _same_as_gdal_warp(real, None)
    assert set(plans) == {"B05", "B06", "B07", "B8A", "B11", "B12", "SCL"} and {p.factor for p in plans.values()} == {2}
    plans = _same_as_gdal_warp(real, [4.0596, 50.7440, 4.0665, 50.7482], chunk=16)  # unaligned, several chunks
    assert {p.offset for p in plans.values()} != {(2, 2)}
    demo = search(stac_url, request_)  # SYNTHETIC, all 12 bands: B01/B09 at 60 m, enlarged 6x
    plans = _same_as_gdal_warp(demo, request_.aoi, chunk=48)
    assert plans["B01"].factor == 6 and plans["B05"].factor == 2
    # another CRS: nothing lines up, everything goes through the warp
    assert _same_as_gdal_warp(real, None, crs="EPSG:3857") == {}
