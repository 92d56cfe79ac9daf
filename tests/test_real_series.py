"""Real Sentinel-2 L2A series (``../shared/data/real-s2-l2a``) through the path users take:
static catalog → search → cube → reconstruct → Zarr/COG/STAC, read back the way users read them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.transform
import xarray as xr
from typer.testing import CliRunner

import cloudfree
from cloudfree.bands import MAX_REFLECTANCE
from cloudfree.cli import app

DEFAULT_MASK = (0, 1, 3, 8, 9, 10)
# collection → (bands, native resolution of the output grid, a clear date, a 1-month window)
COLLECTIONS = {
    "worldcereal_0000280849BAC91C": (("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"), 10,
                                     "2019-07-25"),
    "worldcereal_000028085BF08E7E": (("B05", "B06", "B07", "B8A", "B11", "B12"), 20, "2019-07-05"),
    "gfmap_optical_cube": (("B02", "B03", "B04", "B08"), 10, "2023-12-26"),
    "gfmap_l2a": (("B01", "B04", "B08", "B11"), 10, "2023-04-15"),
}


@pytest.fixture(scope="module")
def catalog(shared_data) -> Path:
    return shared_data / "real-s2-l2a" / "catalog.json"


@pytest.fixture(scope="module")
def items_by_collection(catalog):
    from cloudfree.catalog.sources import read_static_items

    out: dict[str, list] = {}
    for it in read_static_items(str(catalog)):
        out.setdefault(it.collection_id, []).append(it)
    return out


def _bbox(items) -> str:
    w = min(i.bbox[0] for i in items); s = min(i.bbox[1] for i in items)
    e = max(i.bbox[2] for i in items); n = max(i.bbox[3] for i in items)
    return f"{w},{s},{e},{n}"


def _invoke(*args: str):
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r


def _input_reflectance(item, band: str, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The input COG's reflectance (DN × scale + offset, NaN at nodata) at output pixel centres."""
    with rasterio.open(item.assets[band].href) as src:
        a = src.read(1).astype(np.float64)
        rb = item.assets[band].extra_fields["raster:bands"][0]
        r, c = rasterio.transform.rowcol(src.transform, xs.ravel(), ys.ravel())
        r, c = np.asarray(r), np.asarray(c)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        out = np.full(r.shape, np.nan)
        v = a[r[inside], c[inside]]
        out[inside] = np.where(v == rb["nodata"], np.nan, v * rb["scale"] + rb.get("offset", 0.0))
    return out.reshape(xs.shape)


def _input_clear(item, xs, ys, unusable=DEFAULT_MASK) -> np.ndarray:
    with rasterio.open(item.assets["SCL"].href) as src:
        scl = src.read(1)
        r, c = rasterio.transform.rowcol(src.transform, xs.ravel(), ys.ravel())
        r, c = np.asarray(r), np.asarray(c)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        out = np.zeros(r.shape, bool)
        out[inside] = ~np.isin(scl[r[inside], c[inside]], unusable)
    return out.reshape(xs.shape)


@pytest.mark.slow
@pytest.mark.parametrize("collection", list(COLLECTIONS))
@pytest.mark.parametrize("method", ["default", "median"])
def test_run_whole_patch_with_its_own_bands(collection, method, catalog, items_by_collection, tmp_path):
    """``cloudfree run`` (and ``--method median``) on each real patch, its own bands and native
    resolution: the output at clear pixels of a clear date is that date's input reflectance."""
    bands, res, day = COLLECTIONS[collection]
    items = items_by_collection[collection]
    args = ["run", "--stac", str(catalog), "--collection", collection, "--bbox", _bbox(items), "--start", day,
            "--end", day, "--context-days", "0", "--out", str(tmp_path), "--chunk", "32"]
    _invoke(*(args + ([] if method == "default" else ["--method", "median"])))
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["bands"] == list(bands) and manifest["resolution"] == res
    assert manifest["method"] == ("model" if method == "default" else "median")
    if method == "default":  # the shipped model is band-aware: it serves every one of these band sets
        assert "serves bands " + ", ".join(bands) in manifest["method_reason"]
    ds = xr.open_zarr(tmp_path / "mosaic.zarr", decode_coords="all")
    assert ds.rio.resolution() == (res, -res) and list(ds.band.values) == list(bands)
    xs, ys = np.meshgrid(ds.x.values, ds.y.values)
    (item,) = [i for i in items if str(i.datetime)[:10] == day]
    refs = {band: _input_reflectance(item, band, xs, ys) for band in bands}
    # above reflectance 1 a value is never a clear observation, whatever SCL says
    clear = _input_clear(item, xs, ys) & ~np.any([r > MAX_REFLECTANCE for r in refs.values()], axis=0)
    assert clear.mean() > 0.5, "the chosen date should be mostly clear"
    out = ds["reflectance"].isel(time=0).values
    for b, band in enumerate(bands):
        ref = refs[band]
        ok = clear & np.isfinite(ref)
        with rasterio.open(item.assets[band].href) as src:
            native = src.res[0] == res
        if native:  # same grid: the very values (1e-4: the cube's uint16 encoding)
            np.testing.assert_allclose(out[b][ok], ref[ok], atol=1.01e-4)
        else:  # a 20 m band on the 10 m grid is resampled bilinearly: close, not equal
            assert np.nanmean(np.abs(out[b][ok] - ref[ok])) < 0.01
    # pixels SCL calls unusable on the only date have no value and are flagged
    assert np.isnan(out[:, ~clear & (ds["no_clear"].isel(time=0).values == 1)]).all()
    assert (ds["no_clear"].isel(time=0).values[clear] == 0).all()


@pytest.mark.slow
def test_median_over_a_real_window_matches_the_inputs(catalog, items_by_collection, tmp_path):
    """A two-month window of 4-band 10 m real data: the output is the per-pixel median of the
    clear input observations, computed here from the raw COGs and SCL."""
    collection = "gfmap_optical_cube"
    items = items_by_collection[collection]
    _invoke("run", "--stac", str(catalog), "--collection", collection, "--bbox", _bbox(items), "--start", "2023-10-01",
            "--end", "2023-11-30", "--context-days", "0", "--method", "median", "--out", str(tmp_path))
    ds = xr.open_zarr(tmp_path / "mosaic.zarr", decode_coords="all")
    xs, ys = np.meshgrid(ds.x.values, ds.y.values)
    window = [i for i in items if "2023-10-01" <= str(i.datetime)[:10] <= "2023-11-30"]
    assert len(window) > 5
    clear = np.stack([_input_clear(i, xs, ys) for i in window])
    out = ds["reflectance"].isel(time=0).values
    for b, band in enumerate(COLLECTIONS[collection][0]):
        refl = np.stack([_input_reflectance(i, band, xs, ys) for i in window])
        ok = clear & np.isfinite(refl)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            exp = np.nanmedian(np.where(ok, refl, np.nan), axis=0)
        seen = ok.any(0)
        np.testing.assert_allclose(out[b][seen], exp[seen], atol=1.01e-4)
        assert np.isnan(out[b][~seen]).all()
    assert int(ds["clear_count"].isel(time=0).max()) <= len(window)


@pytest.fixture(scope="module")
def real_outputs(catalog, items_by_collection, tmp_path_factory):
    """Monthly outputs of a real 4-band series (three periods)."""
    out = tmp_path_factory.mktemp("real_outputs")
    items = items_by_collection["gfmap_optical_cube"]
    _invoke("run", "--stac", str(catalog), "--collection", "gfmap_optical_cube", "--bbox", _bbox(items),
            "--start", "2023-10-01", "--end", "2023-12-31", "--period", "month", "--context-days", "0",
            "--method", "median", "--exclude-scl", "0,1,3,7,8,9,10,11", "--out", str(out))
    return out


def test_outputs_are_a_stac_item_collection_that_reads_back(real_outputs, tmp_path):
    import odc.stac
    import pystac
    import rioxarray

    from cloudfree.catalog.sources import read_static_items

    ds = xr.open_zarr(real_outputs / "mosaic.zarr", decode_coords="all")
    assert list(ds.period.values) == ["2023-10", "2023-11", "2023-12"]
    assert str(ds.period_start.values[1])[:10] == "2023-11-01" and str(ds.period_end.values[1])[:10] == "2023-11-30"
    ic = pystac.ItemCollection.from_file(str(real_outputs / "items.json"))
    ids = [i.id for i in ic]
    assert len(set(ids)) == 3 and all(i.startswith("cloudfree-2023-") for i in ids)
    for it, t in zip(ic, range(3)):
        p = it.properties
        assert it.datetime is not None and str(it.datetime)[:10] == str(ds.time.values[t])[:10]
        assert p["start_datetime"].startswith(str(ds.period_start.values[t])[:10])
        assert p["end_datetime"].startswith(str(ds.period_end.values[t])[:10])
        assert p["proj:shape"] == [ds.sizes["y"], ds.sizes["x"]] and p.get("proj:epsg", 32631) == 32631
        assert p["cloudfree:masked_scl_classes"] == [0, 1, 3, 7, 8, 9, 10, 11]
        asset = it.assets["reflectance"].to_dict()
        assert [b["name"] for b in asset["eo:bands"]] == ["B02", "B03", "B04", "B08"]
        assert [b["common_name"] for b in asset["eo:bands"]] == ["blue", "green", "red", "nir"]
        assert all(rb["scale"] == pytest.approx(1e-4) and rb["offset"] == 0 and rb["nodata"] == 0
                   for rb in asset["raster:bands"])
    # exactly the user's call: plain pystac + odc-stac on items.json
    plain = odc.stac.load(pystac.ItemCollection.from_file(str(real_outputs / "items.json")), bands=["B04"], chunks={})
    dn = plain["B04"].isel(time=1).values.astype(float)
    np.testing.assert_allclose(np.where(dn > 0, dn * 1e-4, np.nan), ds["reflectance"].isel(time=1, band=2).values,
                               atol=5.1e-5, equal_nan=True)
    coll = pystac.Collection.from_file(str(real_outputs / "collection.json"))
    assert sorted(i.id for i in coll.get_items()) == sorted(ids)
    # odc-stac on the output items: same values, CRS and geobox
    items = read_static_items(str(real_outputs / "items.json"))
    back = odc.stac.load(items, bands=["B02", "B08"], chunks={})
    assert back.odc.geobox == ds.odc.geobox and back.odc.geobox.crs.epsg == 32631
    for t in range(3):
        dn = back["B08"].isel(time=t).values.astype(float)
        np.testing.assert_allclose(np.where(dn > 0, dn * 1e-4, np.nan), ds["reflectance"].isel(time=t, band=3).values,
                                   atol=5.1e-5, equal_nan=True)
    # a user in QGIS / rioxarray: reflectance, not DN
    cog = json.loads((real_outputs / "run.json").read_text())["periods"]["2023-11"]["cog"]
    r = rioxarray.open_rasterio(cog, mask_and_scale=True)
    np.testing.assert_allclose(r.values, ds["reflectance"].isel(time=1).values, atol=5.1e-5, equal_nan=True)
    with rasterio.open(cog) as src:
        assert src.descriptions == ("B02", "B03", "B04", "B08") and src.tags()["masked_scl_classes"] == "[0, 1, 3, 7, 8, 9, 10, 11]"
        assert src.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2" and src.overviews(1)
    # ... and `cloudfree cube --stac <outputs>` reads them back as a cube (no SCL: data = clear)
    _invoke("cube", "--stac", str(real_outputs / "items.json"), "--start", "2023-10-01",
            "--end", "2023-12-31", "--out", str(tmp_path / "cube.zarr"))
    cube = cloudfree.load_cube(items, None)
    stored = xr.open_zarr(tmp_path / "cube.zarr", decode_coords="all")
    assert stored.odc.geobox == ds.odc.geobox and list(stored.band.values) == ["B02", "B03", "B04", "B08"]
    np.testing.assert_allclose(stored["reflectance"].values, ds["reflectance"].values, atol=1.01e-4, equal_nan=True)
    assert "no SCL" in cube.attrs["mask"]


def test_static_catalog_collection_and_item_collection_give_identical_cubes(catalog, items_by_collection, tmp_path):
    """The same search over the static catalog, its collection.json and an ItemCollection file
    with hrefs relative to where that file lies."""
    collection = "gfmap_l2a"
    items = items_by_collection[collection]
    fc = {"type": "FeatureCollection", "features": []}
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    for it in items:
        d = it.to_dict(include_self_link=False, transform_hrefs=False)
        for a in d["assets"].values():
            a["href"] = os.path.relpath(a["href"], sub)
        d["links"] = []
        fc["features"].append(d)
    (sub / "items.json").write_text(json.dumps(fc))
    kw = dict(bbox=_bbox(items), collection=collection)
    found = {src: cloudfree.search(src, "2023-04-01", "2023-04-20", **kw) for src in
             (str(catalog), (catalog.parent / collection / "collection.json").as_uri(), str(sub / "items.json"))}
    ids = [[i.id for i in v] for v in found.values()]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 8
    cubes = [cloudfree.load_cube(v, kw["bbox"]).compute() for v in found.values()]
    for c in cubes[1:]:
        xr.testing.assert_identical(c, cubes[0])
    assert cubes[0].sizes["band"] == 4 and float(cubes[0]["clear"].mean()) > 0.2


def test_missing_band_and_unknown_collection_name_the_collection_and_its_bands(catalog, items_by_collection, tmp_path):
    bbox = _bbox(items_by_collection["gfmap_l2a"])
    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--collection", "gfmap_l2a", "--bbox", bbox,
                                 "--start", "2023-04-01", "--end", "2023-04-30", "--bands", "B02,B04",
                                 "--out", str(tmp_path / "a")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "collection gfmap_l2a has no band B02" in text and "B01, B04, B08, B11, SCL" in text
    assert not (tmp_path / "a" / "cube.zarr").exists()  # before any pixel was read
    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--collection", "sentinel-2-l2a", "--bbox", bbox,
                                 "--start", "2023-04-01", "--end", "2023-04-30", "--out", str(tmp_path / "b")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "collection 'sentinel-2-l2a' not found" in text
    assert "gfmap_l2a (bands: B01, B04, B08, B11, SCL)" in text and "worldcereal_000028085BF08E7E (bands: B05" in text
    # a checkpoint's band set is named before any Dask work when the model is asked for explicitly
    from cloudfree.models.checkpoint import unet_weights

    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--collection", "gfmap_l2a", "--bbox", bbox,
                                 "--start", "2023-04-01", "--end", "2023-04-30", "--method", "model",
                                 "--model", str(unet_weights()), "--out", str(tmp_path / "c")])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "serves the band set B01, B02" in text and "the cube has B01, B04, B08, B11" in text
    assert not (tmp_path / "c" / "cube.zarr").exists()


def _pixel_bbox(item, col: int, row: int, w: int, h: int) -> str:
    """A lon/lat box just inside ``w`` × ``h`` pixels of the item's 10 m grid."""
    from pyproj import Transformer

    t = item.assets["B04"].extra_fields["proj:transform"]
    x0, y0 = t[2] + col * 10 + 2, t[5] - (row + h) * 10 + 2
    x1, y1 = t[2] + (col + w) * 10 - 2, t[5] - row * 10 - 2
    tr = Transformer.from_crs(32631, 4326, always_xy=True)
    (lw, le), (ls, ln) = tr.transform([x0, x1], [y0, y1])
    return f"{lw},{ls},{le},{ln}"


@pytest.mark.parametrize("size", [(1, 1), (5, 7)])
def test_tiny_real_aois_run(size, catalog, items_by_collection, tmp_path):
    w, h = size
    items = items_by_collection["gfmap_l2a"]
    bbox = _pixel_bbox(items[0], 20, 30, w, h)
    _invoke("run", "--stac", str(catalog), "--collection", "gfmap_l2a", "--bbox", bbox, "--start", "2023-04-01",
            "--end", "2023-04-30", "--out", str(tmp_path))
    ds = xr.open_zarr(tmp_path / "mosaic.zarr")
    assert (ds.sizes["y"], ds.sizes["x"]) == (h, w)
    assert np.isfinite(ds["reflectance"].values).all()


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (40, 3)])
def test_model_runs_on_any_area_and_tiles_agree(size, demo_items, tmp_path):
    """The model path (12-band SYNTHETIC demo: the only 12-band series here) on areas from one
    pixel up: padded, not refused; a tiled run equals a single-tile run."""
    from cloudfree.reconstruct.tiles import TileConfig

    items = cloudfree.search(str(demo_items), "2024-04-01", "2024-05-31", bbox=_demo_bbox(demo_items))
    w, h = size
    cube = cloudfree.load_cube(items, _demo_bbox(demo_items), chunk=16).isel(y=slice(3, 3 + h), x=slice(5, 5 + w))
    tiles = TileConfig(patch=32, overlap=4, device="cpu")
    one = cloudfree.reconstruct(cube, "2024-04-15", "2024-05-15", method="model", tiles=tiles, chunk=64).compute()
    many = cube.cloudfree.reconstruct("2024-04-15", "2024-05-15", method="model", tiles=tiles, chunk=2).compute()
    assert one.sizes["y"] == h and one.sizes["x"] == w and one.attrs["method"] == "model"
    np.testing.assert_allclose(many["reflectance"].values, one["reflectance"].values, atol=1e-5, equal_nan=True)
    ok = one["no_clear"].values == 0
    assert ok.any() and np.isfinite(one["reflectance"].values[:, :, ok[0]]).all()


def _demo_bbox(demo_items) -> str:
    fc = json.loads(Path(demo_items).read_text())
    w = max(f["bbox"][0] for f in fc["features"]); s = max(f["bbox"][1] for f in fc["features"])
    e = min(f["bbox"][2] for f in fc["features"]); n = min(f["bbox"][3] for f in fc["features"])
    return f"{w + 0.002},{s + 0.002},{e - 0.002},{n - 0.002}"


def test_library_api_with_a_module_and_outputs(demo_items, tmp_path):
    """search → load_cube → reconstruct (model as an nn.Module) → write_outputs, from a notebook."""
    from cloudfree.models import load_checkpoint
    from cloudfree.models.checkpoint import default_weights
    from cloudfree.reconstruct.tiles import TileConfig

    assert set(cloudfree.__all__) == {"search", "load_cube", "reconstruct", "write_outputs", "run", "__version__"}
    bbox = _demo_bbox(demo_items)
    items = cloudfree.search(str(demo_items), "2024-04-01", "2024-05-31", bbox=bbox)
    cube = cloudfree.load_cube(items, bbox, chunk=32).isel(y=slice(0, 40), x=slice(0, 40))
    net, _ = load_checkpoint(default_weights())
    tiles = TileConfig(patch=32, overlap=4, device="cpu")
    lazy = cloudfree.reconstruct(cube, "2024-04-15", "2024-05-15", model=net, tiles=tiles)
    assert lazy["reflectance"].chunks is not None and lazy.attrs["method"] == "model"
    from_path = cloudfree.reconstruct(cube, "2024-04-15", "2024-05-15", model=str(default_weights()), tiles=tiles)
    np.testing.assert_allclose(lazy["reflectance"].values, from_path["reflectance"].values, atol=1e-6, equal_nan=True)
    res = lazy.cloudfree.write_outputs(tmp_path)
    assert res["status"] == "written" and Path(res["items"]).exists()
    back = xr.open_zarr(res["zarr"])
    np.testing.assert_allclose(back["reflectance"].values, from_path["reflectance"].values, atol=1e-6, equal_nan=True)
    again = cloudfree.write_outputs(lazy, tmp_path)
    assert again["status"] == "reused"


def test_cube_and_evaluate_take_a_band_subset(catalog, tmp_path):
    """``cube`` with no bbox (every item of the collection, on its own grid) and ``evaluate --bands``."""
    _invoke("cube", "--stac", str(catalog), "--collection", "gfmap_optical_cube", "--start", "2023-10-01",
            "--end", "2023-12-31", "--bands", "nir,red", "--out", str(tmp_path / "cube.zarr"))
    cube = xr.open_zarr(tmp_path / "cube.zarr")
    assert list(cube.band.values) == ["B04", "B08"] and (cube.sizes["y"], cube.sizes["x"]) == (52, 46)
    r = _invoke("evaluate", "--cube", str(tmp_path / "cube.zarr"), "--bands", "B08", "--out", str(tmp_path / "rep"),
                "--min-clear", "0.5")
    rows = json.loads((tmp_path / "rep" / "report.json").read_text())["rows"]
    assert {r["method"] for r in rows} >= {"median", "interpolation", "mosaicking", "least_cloudy"}
    r = CliRunner().invoke(app, ["evaluate", "--cube", str(tmp_path / "cube.zarr"), "--bands", "B11",
                                 "--out", str(tmp_path / "rep2")])
    assert r.exit_code == 2 and "has no band B11; it has B04, B08" in " ".join(r.output.split())


def test_demo_runs_on_the_bundled_real_series(tmp_path, monkeypatch):
    """``cloudfree demo``: the real series that ships in the package, the model, a side-by-side PNG."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    r = _invoke("demo", "--out", str(tmp_path / "out"))
    text = " ".join(r.output.split())
    assert "REAL Sentinel-2 L2A series bundled" in text and "Dask dashboard: http" in text
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["method"] == "model" and manifest["synthetic_input"] is False and len(manifest["periods"]) == 2
    png = tmp_path / "out" / "compare_2019-08.png"
    assert png.exists() and Image.open(png).size[0] > 3 * 64
    assert Image.open(png).text["cloudfree:input_date"].startswith("2019-08-")  # a date of the period shown


def test_a_period_seen_only_from_other_months_is_said(catalog, items_by_collection, tmp_path):
    """gfmap_optical_cube: November has no clear observation of its own; its image comes from
    October and December dates, which the run says (console, run.json, STAC Item)."""
    items = items_by_collection["gfmap_optical_cube"]
    r = _invoke("run", "--stac", str(catalog), "--collection", "gfmap_optical_cube", "--bbox", _bbox(items),
                "--start", "2023-11-01", "--end", "2023-11-30", "--period", "month", "--method", "median",
                "--out", str(tmp_path / "out"))
    text = " ".join(r.output.split())
    share = json.loads((tmp_path / "out" / "run.json").read_text())["validation"]["2023-11"]["outside"]
    assert share > 0.5 and "no clear observation inside the period" in text
    item = json.loads((tmp_path / "out" / "cloudfree_2023-11.stac.json").read_text())
    assert item["properties"]["cloudfree:from_outside_period"] == pytest.approx(share)
