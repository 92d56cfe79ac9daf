"""Real STAC Items from Earth Search and Planetary Computer (metadata only, no pixel reads)."""

import json

import pystac
import pytest

from cloudfree.aoi import parse_bbox
from cloudfree.cube.load import CubeSpec, band_mapping, plan_geobox
from cloudfree.bands import L2A_BANDS
from cloudfree.cube.radiometry import item_radiometry


def _epsg(item) -> int:
    p = item.properties  # pystac migrates proj:epsg to proj:code
    return int(p["proj:epsg"]) if "proj:epsg" in p else int(p["proj:code"].split(":")[1])


def _items(shared_data, name):
    fc = json.loads((shared_data / "stac-items" / name).read_text())
    return [pystac.Item.from_dict(f) for f in fc["features"]]


def test_earth_search_mapping_and_offset(shared_data):
    items = _items(shared_data, "earth_search_sentinel-2-l2a.json")
    m = band_mapping(items[:1], L2A_BANDS)
    assert m["B04"] == "red" and m["B8A"] == "nir08" and m["B01"] == "coastal" and m["SCL"] == "scl"
    assert "jp2" not in "".join(m.values())
    for it in items:
        r = item_radiometry(it, "red")
        assert r.scale == pytest.approx(1e-4)
        if it.properties.get("earthsearch:boa_offset_applied"):
            assert r.offset == 0.0 and "already applied" in r.reason


def test_planetary_computer_mapping_and_offset(shared_data):
    items = _items(shared_data, "planetary_computer_sentinel-2-l2a.json")
    m = band_mapping(items[:1], L2A_BANDS)
    assert m["B04"] == "B04" and m["SCL"] == "SCL" and m["B8A"] == "B8A"
    r = item_radiometry(items[0], "B04")  # baseline 02.12: no offset
    assert (r.scale, r.offset) == (pytest.approx(1e-4), 0.0)
    newer = items[0].clone()
    newer.properties["s2:processing_baseline"] = "04.00"
    r = item_radiometry(newer, "B04")
    assert r.offset == pytest.approx(-0.1) and "04.00" in r.reason


def test_geobox_planned_from_real_items(shared_data):
    items = _items(shared_data, "earth_search_sentinel-2-l2a.json")
    it = items[0]
    w, s, e, n = it.bbox
    aoi = parse_bbox(f"{w + 0.1},{s + 0.1},{w + 0.2},{s + 0.15}")
    gb = plan_geobox([it], aoi, CubeSpec())
    assert gb.crs.epsg == _epsg(it)
    assert gb.resolution.x == 10
    assert 700 < gb.shape.x < 900  # 0.1° of longitude at ~40°N is ~8.5 km


def test_planetary_items_span_utm_zones(shared_data, caplog):
    items = _items(shared_data, "planetary_computer_sentinel-2-l2a.json")
    zones = {_epsg(i) for i in items}
    assert len(zones) > 1
    aoi = parse_bbox("179.0,60.0,179.9,60.5")
    gb = plan_geobox([i for i in items if _epsg(i) == 32660][:1], aoi, CubeSpec(crs="EPSG:32660"))
    assert gb.crs.epsg == 32660


def test_real_cloud_masks_drive_the_sampler(shared_data):
    import numpy as np

    from cloudfree.evaluate.examples import Series, make_example

    clm = np.load(shared_data / "real-clouds-slovenia" / "CLM.npy")[..., 0].astype(bool)
    ndvi = np.load(shared_data / "real-clouds-slovenia" / "NDVI.npy")[..., 0]
    days = np.array([np.datetime64(d[:10], "D").astype(float) for d in
                     json.loads((shared_data / "real-clouds-slovenia" / "timestamps.json").read_text())])
    s = Series(ndvi[:, None].astype(np.float32), ~clm, days)
    ex = make_example(s, np.random.default_rng(3), crop=None, drop_target_p=0.0, augment=False)
    assert ex is not None and ex.hidden.any()
    # hidden pixels are clear in truth and covered by the source date's real clouds
    assert (ex.hidden <= ex.truth_mask).all() and (ex.hidden <= clm[ex.source_index]).all()
