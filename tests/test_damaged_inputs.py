"""Damaged inputs are caught, never averaged in: the bundled REAL series copied to a temporary folder
and damaged on disk (re-encoded COGs, wrong nodata or size, truncated files, text, FIFOs,
directories, a missing SCL or band, a catalog edited in place), each run through ``cloudfree run``
as a user calls it."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from cloudfree.catalog import bundled_catalog
from cloudfree.cli import app

DAY = "20190814"  # an August 2019 date of the bundled series, inside every run below


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A private copy of the bundled catalog (collection.json), free to damage."""
    src = Path(bundled_catalog()).parent
    dst = tmp_path / "catalog"
    shutil.copytree(src, dst)
    return dst / "collection.json"


def _item_dir(catalog: Path, day: str = DAY) -> Path:
    return next(p for p in catalog.parent.iterdir() if p.is_dir() and day in p.name)


def _item(catalog: Path, day: str = DAY) -> tuple[Path, dict]:
    d = _item_dir(catalog, day)
    path = d / f"{d.name}.json"
    return path, json.loads(path.read_text())


def _edit_item(catalog: Path, fn, day: str = DAY) -> None:
    path, item = _item(catalog, day)
    fn(item)
    path.write_text(json.dumps(item))


def _rewrite(path: Path, **changes) -> None:
    """The COG at ``path`` written again with ``changes`` to its profile (dtype, nodata, size)."""
    with rasterio.open(path) as src:
        data, profile = src.read(1), src.profile
    profile.update(driver="GTiff", **{k: v for k, v in changes.items() if k != "shape"})
    if "shape" in changes:
        h, w = changes["shape"]
        data = data[:h, :w]
        profile.update(height=h, width=w)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(profile["dtype"]), 1)


def _run(catalog: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["run", "--stac", str(catalog), "--start", "2019-08-01", "--end", "2019-08-31",
                                    "--out", str(out), "--device", "cpu", *extra])


def _refused(r, *words: str) -> str:
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    for w in words:
        assert w in text, text
    return text


def _item_id(catalog: Path, day: str = DAY) -> str:
    return _item(catalog, day)[1]["id"]


@pytest.mark.parametrize("damage, words", [
    (lambda p: _rewrite(p, dtype="float32"), ["stored as float32, the item declares uint16"]),
    (lambda p: _rewrite(p, dtype="uint8"), ["stored as uint8, the item declares uint16"]),
    (lambda p: _rewrite(p, nodata=65535), ["its nodata is 65535, the item declares 0"]),
    (lambda p: _rewrite(p, shape=(48, 64)), ["is 48 x 64 px, the item declares proj:shape [64, 64]"]),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), ["is truncated"]),
    (lambda p: p.write_text("this is not a raster\n"), ["is not a readable raster"]),
    (lambda p: p.unlink(), ["cannot be opened"]),
    (lambda p: (p.unlink(), p.mkdir()), ["is a directory, not a raster file"]),
    (lambda p: (p.unlink(), os.mkfifo(p)), ["is a FIFO, not a raster file"]),
], ids=["float32", "uint8", "nodata", "size", "truncated", "text", "missing", "directory", "fifo"])
def test_a_damaged_asset_is_named_before_any_pixel_is_read(catalog, tmp_path, damage, words):
    damage(_item_dir(catalog) / "B04.tif")
    done = {}
    t = threading.Thread(target=lambda: done.setdefault("r", _run(catalog, tmp_path / "out")), daemon=True)
    t.start()
    t.join(120)  # a FIFO must not hang the run
    assert "r" in done, "the run hung on a damaged asset"
    text = _refused(done["r"], _item_id(catalog), "asset B04", "--skip-bad-assets", *words)
    assert "mosaic" not in text  # before any pixel work
    assert not (tmp_path / "out" / "mosaic.zarr").exists()


def test_hrefs_that_are_not_raster_files_are_refused(catalog, tmp_path):
    for href, words in [("/dev/zero", "not a raster file"), ("/etc/passwd", "not a readable raster"),
                        ("ftp://example.com/B04.tif", "B04.tif")]:  # pystac resolves ftp: as a relative path
        shutil.copytree(catalog.parent, tmp_path / "c2", dirs_exist_ok=True)
        cat = tmp_path / "c2" / "collection.json"
        _edit_item(cat, lambda it: it["assets"]["B04"].update(href=href))
        _refused(_run(cat, tmp_path / "out"), "asset B04", words)


def test_skip_bad_assets_drops_the_date_and_says_so_everywhere(catalog, tmp_path):
    _rewrite(_item_dir(catalog) / "B04.tif", dtype="float32")
    r = _run(catalog, tmp_path / "out", "--skip-bad-assets")
    assert r.exit_code == 0, r.output
    bad = _item_id(catalog)
    assert "1 input item(s) left out" in " ".join(r.output.split()) and bad in r.output
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "stored as float32" in manifest["dropped_inputs"][bad]
    item = json.loads(next((tmp_path / "out").glob("cloudfree_*.stac.json")).read_text())
    assert bad in item["properties"]["cloudfree:dropped_inputs"]
    assert f"{DAY[:4]}-{DAY[4:6]}-{DAY[6:]}" not in item["properties"]["cloudfree:input_dates"]


def test_an_item_without_scl_is_left_out_not_counted_clear(catalog, tmp_path):
    _edit_item(catalog, lambda it: it["assets"].pop("SCL"))
    r = _run(catalog, tmp_path / "out")
    assert r.exit_code == 0, r.output
    bad = _item_id(catalog)
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "SCL" in manifest["dropped_inputs"][bad]
    assert "SCL classes" in manifest["mask"]  # the other dates are still masked by their SCL
    assert bad in r.output


def test_an_item_without_a_band_is_left_out_not_the_band(catalog, tmp_path):
    _edit_item(catalog, lambda it: it["assets"].pop("B03"))
    r = _run(catalog, tmp_path / "out")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "B03" in manifest["bands"]
    assert "B03" in manifest["dropped_inputs"][_item_id(catalog)]


def test_a_catalog_edited_in_place_is_never_reused(catalog, tmp_path):
    """Every item's offset changed (the pixels change): the old mosaic is not passed off as current."""
    out = tmp_path / "out"
    assert _run(catalog, out).exit_code == 0
    before = np.asarray(rasterio.open(next(out.glob("cloudfree_*.tif"))).read(1), float)
    for f in catalog.parent.glob("*/*.json"):
        item = json.loads(f.read_text())
        for a in item["assets"].values():
            for rb in a.get("raster:bands", []):
                if "scale" in rb:
                    rb["offset"] = -0.05
        f.write_text(json.dumps(item))
    r = _run(catalog, out)
    assert "mosaic reused" not in " ".join(r.output.split())
    _refused(r, "written for a different request")  # before any read: the old COG stays as it was
    assert np.array_equal(before, np.asarray(rasterio.open(next(out.glob("cloudfree_*.tif"))).read(1), float))


def test_an_item_without_datetime_or_footprint_is_named(catalog, tmp_path):
    _edit_item(catalog, lambda it: (it.pop("geometry"), it.pop("bbox")))
    _refused(_run(catalog, tmp_path / "out"), _item_id(catalog), "neither geometry nor bbox")


def test_header_checks_name_schemes_and_strip_terminal_escapes():
    from cloudfree.cube.checks import _read_header, safe_text

    assert "unsupported URL scheme 'ftp'" in _read_header("ftp://example.com/B04.tif")
    assert safe_text("item\x1b]0;pwned\x07\x1b[2K") == "item?]0;pwned??[2K"
    assert len(safe_text("x" * 5000)) == 200


# --- what comes from a catalog or a path is printed as text, never as markup or terminal escapes ---

def test_item_ids_with_terminal_escapes_are_printed_harmless(catalog, tmp_path):
    evil = "S2\x1b]0;owned\x07\x1b[2Kx"
    _edit_item(catalog, lambda it: it.update(id=evil))
    r = CliRunner().invoke(app, ["search", "--stac", str(catalog), "--start", "2019-08-01", "--end", "2019-08-31"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output and "S2?]0;owned??[2Kx" in r.output


def test_markup_in_paths_and_names_is_printed_as_given(catalog, tmp_path):
    out = tmp_path / "run[/x] [bold]b"
    r = _run(catalog, out, "--collection", "[bold]s2[/x]")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "[bold]s2[/x]" in text  # the collection as the user typed it, nothing eaten
    r = _run(catalog, out, "--method", "median")
    assert r.exit_code == 0, r.output
    assert "run[/x] [bold]b" in " ".join(r.output.split())


# --- the output folder: never written through links, never mixing requests, never left by ids ---

@pytest.mark.parametrize("name", ["run.json", "items.json", "cloudfree_2019-08.png", ".cloudfree.lock",
                                  "cloudfree_2019-08.tif.part"])
def test_a_link_inside_out_is_refused_and_its_target_untouched(catalog, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(victim)
    r = _run(catalog, out, "--method", "median")
    _refused(r, "symbolic link", name)
    assert victim.read_text() == "precious"


def test_files_of_an_earlier_request_are_set_aside(catalog, tmp_path):
    out = tmp_path / "out"
    assert _run(catalog, out, "--method", "median").exit_code == 0
    shutil.rmtree(out / "mosaic.zarr")  # the user removed the old mosaic, then asks for other dates
    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--start", "2019-09-01", "--end", "2019-09-30",
                                 "--out", str(out), "--device", "cpu", "--method", "median"])
    assert r.exit_code == 0, r.output
    assert not any("2019-08" in p.name for p in out.glob("cloudfree_*")) and any(out.glob("cloudfree_*.tif"))
    assert any("2019-08" in p.name for p in (out / ".stale").rglob("*.tif"))
    assert "moved to" in " ".join(r.output.split())


def test_item_ids_never_place_files_outside_out(catalog, tmp_path):
    _edit_item(catalog, lambda it: it.update(id="../../../escaped" + "x" * 300))
    before = set(tmp_path.rglob("*"))
    out = tmp_path / "deep" / "out"
    r = _run(catalog, out, "--method", "median")
    assert r.exit_code == 0, r.output
    new = set(tmp_path.rglob("*")) - before
    assert all(out in p.parents or p in (out, out.parent) for p in new), [p for p in new if out not in p.parents][:5]


# --- options that used to end in a traceback: one line naming the problem and what to do ---

@pytest.mark.parametrize("args, words", [
    (["--stac", "s3://bucket/catalog.json"], ["s3:// scheme is not supported"]),
    (["--crs", "EPSG:4326"], ["not a projected CRS", "UTM"]),
    (["--crs", "EPSG:999999"], ["not a CRS pyproj knows"]),
    (["--exclude-scl", ""], ["--exclude-scl is empty", "none"]),
    (["--resolution", "100000"], ["choose a finer --resolution"]),
    (["--bbox", "-179,-80,179,80"], ["UTM zones", "--bbox"]),
])
def test_options_that_cannot_work_are_one_line(catalog, tmp_path, args, words):
    base = {"--stac": str(catalog)}
    extra = list(args)
    if extra[0] == "--stac":
        base["--stac"] = extra[1]
        extra = []
    r = CliRunner().invoke(app, ["run", "--stac", base["--stac"], "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path / "out"), "--device", "cpu", *extra])
    _refused(r, *words)


def test_dates_with_a_time_zone_are_read_as_days(catalog, tmp_path):
    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--start", "2019-08-01T00:00:00Z",
                                 "--end", "2019-08-31T23:59:59+02:00", "--out", str(tmp_path / "out"), "--device", "cpu",
                                 "--method", "median"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["status"] == "complete"


def test_broken_static_catalogs_are_named(catalog, tmp_path):
    path, _ = _item(catalog)
    path.write_text("{ not json")
    _refused(_run(catalog, tmp_path / "out"), "could not read the static catalog", "collection.json")
    path.unlink()
    _refused(_run(catalog, tmp_path / "out"), "could not read the static catalog")


def test_exclude_scl_none_uses_every_pixel_on_purpose(catalog, tmp_path):
    r = _run(catalog, tmp_path / "out", "--exclude-scl", "none", "--method", "median")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["masked_scl_classes"] == []


# --- STAC servers that never end: bounded, named ---

def _serve(handler_cls):
    import http.server

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def test_a_server_whose_pages_never_end_stops_at_the_item_limit(monkeypatch):
    import http.server

    from cloudfree.catalog.search import CatalogError, SearchRequest, search

    item = json.loads(_item(Path(bundled_catalog()))[0].read_text())

    class Endless(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.startswith("/search"):
                n = int(self.path.split("page=")[-1]) if "page=" in self.path else 0
                it = dict(item, id=f"i{n}", collection="sentinel-2-l2a", links=[])
                body = {"type": "FeatureCollection", "features": [it],
                        "links": [{"rel": "next", "href": f"{base}/search?page={n + 1}", "type": "application/geo+json"}]}
            else:
                body = {"type": "Catalog", "id": "x", "description": "x", "stac_version": "1.0.0",
                        "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
                        "links": [{"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "GET"},
                                  {"rel": "self", "href": base}]}
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_POST = do_GET

    srv, url = _serve(Endless)
    monkeypatch.setenv("CLOUDFREE_MAX_ITEMS", "25")
    with pytest.raises(CatalogError, match="more than 25 items"):
        search(url, SearchRequest(None, "2019-01-01", "2019-12-31"))
    srv.shutdown()


def test_a_server_that_trickles_is_stopped_within_the_search_time(monkeypatch):
    import http.server
    import time

    from cloudfree.catalog.search import CatalogError, SearchRequest, search

    class Trickle(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass

    srv, url = _serve(Trickle)
    monkeypatch.setenv("CLOUDFREE_SEARCH_TIMEOUT", "4")
    t0 = time.time()
    with pytest.raises(CatalogError, match="did not finish within 4 s"):
        search(url, SearchRequest(None, "2019-01-01", "2019-12-31"))
    assert time.time() - t0 < 10
    srv.shutdown()


def test_the_default_stac_bounds_answer_within_a_minute():
    from cloudfree.catalog.search import SEARCH_TIME, STAC_RETRIES, STAC_TIMEOUT

    # a server that accepts and never answers: every try waits the read timeout, back-off 0.5 s, 1 s
    assert (STAC_RETRIES + 1) * STAC_TIMEOUT[1] + 1.5 <= 60 and SEARCH_TIME >= 60


def test_a_damaged_output_cog_is_written_again_not_reused(catalog, tmp_path):
    out = tmp_path / "out"
    assert _run(catalog, out, "--method", "median").exit_code == 0
    cog = next(out.glob("cloudfree_*[0-9].tif"))
    good = cog.read_bytes()
    raw = bytearray(good)
    raw[-200] ^= 0xFF  # a flipped byte inside a tile
    cog.write_bytes(bytes(raw))
    r = _run(catalog, out, "--method", "median")
    assert r.exit_code == 0, r.output
    assert "changed since it was written" in " ".join(r.output.split())
    with rasterio.open(cog) as src:
        assert np.isfinite(src.read(masked=True).astype(float).filled(np.nan)).any()
    assert cog.read_bytes() != bytes(raw)


def _saturate(path: Path, window=(slice(0, 16), slice(0, 16))) -> None:
    with rasterio.open(path) as src:
        a, profile = src.read(1), src.profile
    a[window] = 65535
    profile.update(driver="GTiff")
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(a, 1)


@pytest.mark.parametrize("extra", [[], ["--keep-cube"], ["--method", "median"]], ids=["default", "keep-cube", "median"])
def test_saturated_values_are_never_an_observation(catalog, tmp_path, extra):
    """65535 with SCL clear (a saturated detector): unusable on every path, never in the picture."""
    for d in catalog.parent.iterdir():
        if d.is_dir() and "_2019" in d.name:
            _saturate(d / "B04.tif")
    r = _run(catalog, tmp_path / "out", *extra)
    assert r.exit_code == 0, r.output
    with rasterio.open(next((tmp_path / "out").glob("cloudfree_*[0-9].tif"))) as src:
        refl = src.read(masked=True).astype(float) * src.scales[0] + src.offsets[0]
    assert float(refl.max()) <= 1.0
    assert refl[:, :16, :16].mask.all()  # no clear observation there: nodata, not 6.55


def test_a_resume_with_another_chunk_or_memory_limit_goes_on(catalog, tmp_path):
    """``--chunk`` and ``--memory-limit`` change how, not what: a resume keeps the store's blocks."""
    import subprocess
    import sys

    out = tmp_path / "out"
    code = ("import sys; from cloudfree.pipeline import run; "
            f"run({str(catalog)!r}, '2019-08-01', '2019-09-30', {str(out)!r}, period='month', device='cpu', chunk=32)")
    # a finished run, then the same request with other settings: reused, not refused
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    r = CliRunner().invoke(app, ["run", "--stac", str(catalog), "--start", "2019-08-01", "--end", "2019-09-30",
                                 "--period", "month", "--out", str(out), "--device", "cpu", "--chunk", "48",
                                 "--memory-limit", "3GB"])
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "goes on with them" in text and "mosaic reused" in text


def test_a_stopped_keep_cube_run_is_resumed_not_replaced_by_a_streamed_one(catalog, tmp_path, monkeypatch):
    from functools import partial

    import cloudfree.pipeline as pipeline
    from cloudfree.cube.store import build_cube

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "build_cube", partial(build_cube, stop_after=3))  # killed while writing the cube
    with pytest.raises(Exception, match="incomplete"):
        pipeline.run(str(catalog), "2019-08-01", "2019-08-31", out, device="cpu", stream=False, echo=lambda s: None)
    monkeypatch.undo()
    said: list[str] = []
    res = pipeline.run(str(catalog), "2019-08-01", "2019-08-31", out, device="cpu", echo=said.append)  # streamed
    assert res["status"] == "complete" and not res["streamed"]
    assert any("resuming it instead of streaming" in s for s in said)
    assert any(s.startswith("cube resumed") for s in said)


@pytest.mark.parametrize("extra", [[], ["--keep-cube"]], ids=["streamed", "keep-cube"])
def test_a_series_without_any_clear_pixel_is_told_before_the_work(catalog, tmp_path, extra):
    def cloudy(path):
        with rasterio.open(path) as src:
            a, profile = src.read(1), src.profile
        a[a > 0] = 9  # cloud, high probability, wherever there is data
        profile.update(driver="GTiff")
        path.unlink()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(a, 1)

    for d in catalog.parent.iterdir():
        if d.is_dir() and "_2019" in d.name:
            cloudy(d / "SCL.tif")
    r = _run(catalog, tmp_path / "out", *extra)
    text = _refused(r, "no date has a clear pixel")
    assert "validation" not in text and "mosaic" not in text


def test_an_asset_server_that_never_answers_is_named_within_the_header_time(catalog, tmp_path, monkeypatch):
    import socket
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(16)], daemon=True).start()
    _edit_item(catalog, lambda it: it["assets"]["B04"].update(href=f"http://127.0.0.1:{srv.getsockname()[1]}/B04.tif"))
    monkeypatch.setenv("CLOUDFREE_HEADER_TIMEOUT", "3")
    t0 = time.time()
    _refused(_run(catalog, tmp_path / "out"), "asset B04", "no answer within 3 s")
    assert time.time() - t0 < 30
    srv.close()


def test_a_date_in_another_crs_is_reprojected_and_recorded(catalog, tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    d = _item_dir(catalog)
    path, item = _item(catalog)
    for key, asset in item["assets"].items():
        tif = d / Path(asset["href"]).name
        with rasterio.open(tif) as src:
            data, profile = src.read(1), src.profile
            tr, w, h = calculate_default_transform(src.crs, "EPSG:32632", src.width, src.height, *src.bounds)
        out = np.zeros((h, w), data.dtype)
        reproject(data, out, src_transform=profile["transform"], src_crs=profile["crs"], dst_transform=tr,
                  dst_crs="EPSG:32632", resampling=Resampling.nearest, src_nodata=0, dst_nodata=0)
        profile.update(driver="GTiff", crs="EPSG:32632", transform=tr, width=w, height=h)
        tif.unlink()
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(out, 1)
        asset.update({"proj:shape": [h, w], "proj:transform": list(tr)[:6]})
    item["properties"].update({"proj:epsg": 32632, "proj:code": "EPSG:32632"})
    path.write_text(json.dumps(item))
    r = _run(catalog, tmp_path / "out", "--method", "median")
    assert r.exit_code == 0, r.output
    assert "reprojected onto the output grid" in " ".join(r.output.split())
    assert json.loads((tmp_path / "out" / "run.json").read_text())["reprojected_inputs"] == [item["id"]]


def _flip_so_it_still_decodes(cog: Path) -> int:
    """Flip one bit inside a tile where deflate still decodes the tile (to other values): the
    damage a reader cannot see. Returns how many pixels changed."""
    good = cog.read_bytes()
    with rasterio.open(cog) as src:
        ref = src.read(1)
    for off in range(len(good) - 1, len(good) // 2, -37):
        raw = bytearray(good)
        raw[off] ^= 0x04
        cog.write_bytes(bytes(raw))
        try:
            with rasterio.open(cog) as src:
                changed = int((src.read(1) != ref).sum())
        except Exception:  # this flip breaks the tile: a reader error, not the case tested here
            continue
        if changed:
            return changed
    raise AssertionError("no flip that still decodes")


def test_a_damaged_tile_that_still_decodes_is_caught_by_its_declared_checksum(catalog, tmp_path):
    """Only a checksum can tell such a tile: the STAC file extension's ``file:checksum`` (a
    multihash) is verified on local assets before any pixel read."""
    import hashlib

    path, item = _item(catalog)
    cog = _item_dir(catalog) / "B04.tif"
    item["assets"]["B04"]["file:checksum"] = "1220" + hashlib.sha256(cog.read_bytes()).hexdigest()
    item["assets"]["B04"]["file:size"] = cog.stat().st_size
    path.write_text(json.dumps(item))
    assert _run(catalog, tmp_path / "intact", "--method", "median").exit_code == 0  # a right checksum passes
    assert _flip_so_it_still_decodes(cog) > 0
    _refused(_run(catalog, tmp_path / "damaged"), _item_id(catalog), "B04", "differs from its item's file:checksum")
    r = _run(catalog, tmp_path / "skipped", "--method", "median", "--skip-bad-assets")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "skipped" / "run.json").read_text())
    assert _item_id(catalog) in json.dumps(manifest["dropped_inputs"])
