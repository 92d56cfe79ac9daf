"""The learned cloud/shadow mask (ukis-csmask ONNX) beside SCL, on the REAL bundled series."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr
from typer.testing import CliRunner

import cloudfree
from cloudfree.catalog import bundled_catalog
from cloudfree.cli import app
from cloudfree.cube.load import MaskConfig, load_cube
from cloudfree.cube.masks import CLOUD, NODATA, SHADOW, classify, csmask_bands, dilate, learned_mask


@pytest.fixture(scope="module")
def real():
    items = cloudfree.search(bundled_catalog(), "2019-07-20", "2019-08-24")
    return load_cube(items, None, mask=MaskConfig(source="model")).compute()


def _day(cube, day: str) -> int:
    return int(np.flatnonzero(cube.time.values.astype("datetime64[D]") == np.datetime64(day))[0])


def test_documented_classes_on_a_real_clear_and_an_overcast_date(real):
    cls = real["cloud_class"].values
    assert set(np.unique(cls)) <= {0, CLOUD, SHADOW, NODATA}
    clear_day, overcast_day = _day(real, "2019-07-25"), _day(real, "2019-08-04")
    scl = real["scl"].values
    # the dates where SCL and the model agree: SCL calls 2019-07-25 clear and 2019-08-04 all cloud
    assert np.isin(scl[clear_day], [3, 8, 9, 10]).mean() < 0.01 and np.isin(scl[overcast_day], [8, 9, 10]).mean() > 0.95
    assert np.isin(cls[clear_day], [CLOUD, SHADOW]).mean() < 0.02
    assert (cls[overcast_day] == CLOUD).mean() > 0.9
    # the clear mask of --mask model follows the learned classes
    np.testing.assert_array_equal(real["clear"].values.astype(bool), np.isin(cls, [0]) & np.isfinite(real["reflectance"].values).all(1))


def test_tiled_equals_untiled(real):
    refl = real["reflectance"].chunk({"time": 1, "y": 64, "x": 64})
    whole = learned_mask(refl, chunk=64).values
    for chunk in (16, 40):
        np.testing.assert_array_equal(learned_mask(refl.chunk({"y": chunk, "x": chunk}), chunk=chunk).values, whole)
    # the block function itself: a window with a halo on a global grid gives the same pixels
    need = list(csmask_bands([str(b) for b in real.band.values]))
    img = real["reflectance"].sel(band=need).isel(time=_day(real, "2019-08-19")).values
    pad = np.pad(img, ((0, 0), (256, 256), (256, 256)), mode="symmetric")
    left = classify(pad[:, :, : 256 + 32 + 256], origin=(0, 0))
    np.testing.assert_array_equal(left, whole[_day(real, "2019-08-19"), :, :32])


def test_dilate_grows_and_does_not_depend_on_tiling():
    rng = np.random.default_rng(0)
    a = xr.DataArray(rng.random((2, 50, 50)) > 0.995, dims=("time", "y", "x"))
    one = dilate(a.chunk({"time": 1, "y": 50, "x": 50}), 2).values
    tiled = dilate(a.chunk({"time": 1, "y": 13, "x": 13}), 2).values
    np.testing.assert_array_equal(one, tiled)
    assert one.sum() > 5 * a.values.sum() and (one | ~a.values).all()


def test_missing_bands_fall_back_to_scl_with_a_warning(shared_data):
    catalog = str(shared_data / "real-s2-l2a" / "catalog.json")
    items = cloudfree.search(catalog, "2023-04-01", "2023-04-30", collection="gfmap_l2a")  # B01 B04 B08 B11
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cube = load_cube(items, None, mask=MaskConfig(source="model"))
    assert any("using SCL only" in str(x.message) for x in w)
    assert cube.attrs["mask_source"] == "scl" and "cloud_class" not in cube
    assert "learned mask not used" in cube.attrs["mask"] and "B02" in cube.attrs["mask"]
    assert json.loads(cube.attrs["mask_config"])["requested_source"] == "model"


def test_run_records_the_mask_source_everywhere(tmp_path):
    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--mask", "both", "--dilate", "1", "--device", "cpu",
                                 "--keep-cube"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["mask_source"] == "both" and manifest["mask_config"]["dilate"] == 1
    cube = xr.open_zarr(tmp_path / "cube.zarr")
    assert "cloud_class" in cube and cube.attrs["mask_source"] == "both"
    scl_bad = np.isin(cube["scl"].values, [0, 1, 3, 8, 9, 10])
    model_bad = np.isin(cube["cloud_class"].values, [CLOUD, SHADOW])
    assert (cube["clear"].values == 0)[scl_bad | model_bad].all()  # the union, then grown
    assert (cube["clear"].values == 0).sum() > (scl_bad | model_bad).sum()
    mosaic = xr.open_zarr(tmp_path / "mosaic.zarr")
    assert mosaic.attrs["mask_source"] == "both"
    (label,) = manifest["periods"]
    item = json.loads(open(manifest["periods"][label]["stac_item"]).read())
    assert item["properties"]["cloudfree:mask_source"] == "both"
    assert item["properties"]["cloudfree:mask_config"]["dilate"] == 1
    with rasterio.open(manifest["periods"][label]["cog"]) as src:
        assert src.tags()["mask_source"] == "both"


def test_bad_mask_words():
    with pytest.raises(ValueError, match="mask source"):
        MaskConfig(source="clouds")
    with pytest.raises(ValueError, match="dilate"):
        MaskConfig(dilate=-1)
