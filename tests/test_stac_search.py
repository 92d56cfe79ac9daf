import pytest

from cloudfree.aoi import AOIError, parse_aoi, parse_bbox
from cloudfree.bands import validate_bands
from cloudfree.catalog.search import CatalogError, NoItemsFound, SearchRequest, search

from .conftest import SPEC


def test_search_returns_items_in_window_only(stac_url, demo_bbox):
    items = search(stac_url, SearchRequest(parse_bbox(demo_bbox), "2024-03-15", "2024-04-15"))
    days = [i.datetime.strftime("%Y-%m-%d") for i in items]
    assert days == ["2024-03-21", "2024-03-31", "2024-04-10"]
    assert all(i.properties["cloudfree:synthetic"] for i in items)


def test_search_outside_area_is_a_clear_error(stac_url):
    with pytest.raises(NoItemsFound, match=r"no items found .*bbox=\(10\.0"):
        search(stac_url, SearchRequest(parse_bbox("10.0,40.0,10.1,40.1"), "2024-03-01", "2024-12-31"))


def test_empty_date_window_names_what_was_searched(stac_url, demo_bbox):
    with pytest.raises(NoItemsFound, match="2030-01-01..2030-02-01"):
        search(stac_url, SearchRequest(parse_bbox(demo_bbox), "2030-01-01", "2030-02-01"))


def test_cloud_cover_filter_applied_on_client(stac_url, demo_bbox):
    all_items = search(stac_url, SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-12-31"))
    clearish = search(stac_url, SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-12-31", max_cloud_cover=20))
    assert len(all_items) == SPEC.n_dates
    assert 0 < len(clearish) < len(all_items)
    assert all(i.properties["eo:cloud_cover"] <= 20 for i in clearish)


def test_geojson_aoi_uses_intersects(stac_url, demo_bbox):
    w, s, e, n = map(float, demo_bbox.split(","))
    tri = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [w, n], [w, s]]]}
    items = search(stac_url, SearchRequest(parse_aoi(__import__("json").dumps(tri)), "2024-03-01", "2024-03-31"))
    assert [i.datetime.day for i in items] == [1, 11, 21, 31]


def test_unreachable_stac_url_is_a_clear_error():
    with pytest.raises(CatalogError, match="127.0.0.1:9"):
        search("http://127.0.0.1:9", SearchRequest(parse_bbox("16,46,16.1,46.1"), "2024-01-01", "2024-02-01"))


@pytest.mark.parametrize("bad", ["1,2,3", "a,b,c,d", "16.2,46,16.1,46.1", "200,10,201,11", "1,2,3,4,5"])
def test_malformed_bbox(bad):
    with pytest.raises(AOIError):
        parse_bbox(bad)


def test_bad_dates_fail_before_network():
    with pytest.raises(ValueError, match="after the end date"):
        search("http://127.0.0.1:9", SearchRequest(parse_bbox("16,46,16.1,46.1"), "2024-05-01", "2024-02-01"))


def test_unknown_band():
    with pytest.raises(ValueError, match="unknown Sentinel-2 L2A band 'B99'"):
        validate_bands(["B04", "B99"])
    assert validate_bands(["red", "nir", "B8A"]) == ("B04", "B08", "B8A")


def test_aoi_across_utm_zones_is_stated():
    aoi = parse_bbox("11.9,46.0,12.1,46.1")
    assert aoi.utm_zones() == [32632, 32633]


def test_local_stac_geoparquet_is_served(demo_items, demo_bbox, tmp_path):
    import subprocess

    from cloudfree.catalog.sources import open_catalog
    from cloudfree.catalog.serve import _rustac

    pq = tmp_path / "items.parquet"
    subprocess.run([_rustac(), "translate", str(demo_items), str(pq)], check=True, capture_output=True)
    with open_catalog(str(pq)) as url:
        items = search(url, SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-03-20"))
    assert [i.id for i in items] == ["SYNTH_S2_L2A_32633_20240301", "SYNTH_S2_L2A_32633_20240311"]


def test_unknown_stac_argument_is_clear():
    from cloudfree.catalog.sources import open_catalog

    with pytest.raises(ValueError, match="neither a URL"):
        with open_catalog("no-such-catalog"):
            pass


@pytest.mark.parametrize("req", [
    ("2024-03-15", "2024-04-15", None, None),
    ("2024-03-01", "2024-12-31", 20, None),
    ("2024-03-21", "2024-03-21", None, None),  # a one-day window holds that day's item
    ("2024-03-01", "2024-12-31", None, "tri"),
])
def test_static_search_in_process_matches_the_api(stac_url, demo_items, demo_bbox, req, tmp_path):
    """A static file is searched without a server, and finds exactly what a STAC API finds; the
    same holds for an NDJSON item file."""
    import json

    start, end, cc, shape = req
    w, s, e, n = map(float, demo_bbox.split(","))
    area = parse_aoi(json.dumps({"type": "Polygon", "coordinates": [[[w, s], [e, s], [w, n], [w, s]]]})) \
        if shape else parse_bbox(demo_bbox)
    request = SearchRequest(area, start, end, max_cloud_cover=cc)
    api = [i.id for i in search(stac_url, request)]
    assert api
    assert [i.id for i in search(str(demo_items), request)] == api
    nd = tmp_path / "items.ndjson"
    nd.write_text("\n".join(json.dumps(f) for f in json.loads(demo_items.read_text())["features"]))
    found = search(str(nd), request)
    assert [i.id for i in found] == api
    assert all(a.href.startswith("/") and __import__("os").path.exists(a.href) for a in found[0].assets.values())


def test_static_search_names_the_collections_it_has(demo_items, demo_bbox):
    with pytest.raises(NoItemsFound, match=r"collection 'landsat' not found .*sentinel-2-l2a \(bands: .*B04"):
        search(str(demo_items), SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-12-31", collection="landsat"))
    with pytest.raises(NoItemsFound, match="2030-01-01..2030-02-01"):
        search(str(demo_items), SearchRequest(parse_bbox(demo_bbox), "2030-01-01", "2030-02-01"))
