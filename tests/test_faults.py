"""Nothing silently wrong: corrupt weights, empty results, a second run into the same folder, a killed
run's STAC server, bad devices — each a clear error with real files, processes and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from cloudfree.catalog import bundled_catalog
from cloudfree.cli import app
from cloudfree.models.checkpoint import default_weights
from cloudfree.outputs.checks import OutputCheckError, check_outputs

RUN = ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31", "--device", "cpu"]


def _fails(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return " ".join(r.output.split())


def test_corrupt_weights_fail_before_any_work(tmp_path):
    bad = tmp_path / "bad.safetensors"
    raw = bytearray(Path(default_weights()).read_bytes())
    header = int.from_bytes(raw[:8], "little") + 8
    raw[header + 64 : header + 64 + 4096] = b"\xff" * 4096  # flipped bytes inside the tensor data: NaN weights
    bad.write_bytes(bytes(raw))
    msg = _fails(*RUN, "--out", str(tmp_path / "out"), "--model", str(bad))
    assert "corrupt" in msg and "bad.safetensors" in msg
    assert not (tmp_path / "out" / "cube.zarr").exists()
    truncated = tmp_path / "short.safetensors"
    truncated.write_bytes(bytes(raw[: len(raw) // 2]))
    assert "not a safetensors file" in _fails(*RUN, "--out", str(tmp_path / "out2"), "--model", str(truncated))


def test_every_date_cloudy_is_an_error_not_an_empty_success(tmp_path):
    msg = _fails(*RUN, "--out", str(tmp_path), "--exclude-scl", "0,1,2,3,4,5,6,7,8,9,10,11", "--method", "median")
    assert "no date has a clear pixel" in msg  # told by the mask before any pixel work
    assert not (tmp_path / "mosaic.zarr").exists() and not (tmp_path / "run.json").exists()


def test_nan_where_inputs_were_clear_is_caught(tmp_path):
    r = CliRunner().invoke(app, [*RUN, "--out", str(tmp_path), "--method", "median"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["checks"]["nan_where_observed"] == 0 and manifest["checks"]["observed"] > 0
    mosaic = tmp_path / "mosaic.zarr"
    check_outputs(mosaic)
    arr = zarr.open_array(str(mosaic / "reflectance"), mode="r+")
    block = arr[0, :, :8, :8]
    arr[0, :, :8, :8] = np.full_like(block, np.nan)  # a chunk of lost values where clear_count > 0
    with pytest.raises(OutputCheckError, match="have no value"):
        check_outputs(mosaic)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from cloudfree.pipeline import _locked\n"
        "with _locked(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(60)"), str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        msg = _fails(*RUN, "--out", str(tmp_path))
        assert f"pid {holder.pid}" in msg and "another cloudfree run" in msg
    finally:
        holder.kill()
        holder.wait()
    r = CliRunner().invoke(app, [*RUN, "--out", str(tmp_path), "--method", "median"])  # the lock died with it
    assert r.exit_code == 0, r.output


def test_the_local_stac_server_dies_with_a_killed_run(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, os; from cloudfree.catalog.serve import serve_stac\n"
        "import psutil\n"
        "with serve_stac(sys.argv[1]) as url:\n"
        "    print(psutil.Process().children()[0].pid, flush=True); time.sleep(120)"),
        str(sorted(Path(bundled_catalog()).parent.glob("*/*.json"))[0])],
        stdout=subprocess.PIPE, text=True)
    server = int(proc.stdout.readline())
    assert _alive(server)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and _alive(server):
        time.sleep(0.1)
    assert not _alive(server), "rustac serve outlived the run that started it"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu"])
def test_bad_device_is_named(device, tmp_path):
    msg = _fails(*RUN, "--out", str(tmp_path), "--device", device)
    assert "--device" in msg


@pytest.mark.parametrize("geojson, words", [
    ('{"type": "Feature", "properties": {}}', "no geometry"),
    ('{"type": "Feature", "geometry": null, "properties": {}}', "no geometry"),
    ('{"type": "Polygon", "coordinates": [[[4.0, 51.0], [4.1, 51.1], [4.1, 51.0], [4.0, 51.1], [4.0, 51.0]]]}',
     "invalid (Self-intersection"),
    ('{"type": "Polygon", "coordinates": "nope"}', "not valid GeoJSON"),
])
def test_broken_geojson_is_named_not_a_traceback(geojson, words, tmp_path):
    msg = _fails("run", "--stac", bundled_catalog(), "--aoi", geojson, "--start", "2019-08-01", "--end", "2019-08-31",
                 "--out", str(tmp_path))
    assert words in msg


def test_demo_data_size_is_checked(tmp_path):
    assert "multiple of 6" in _fails("demo-data", "--out", str(tmp_path), "--size", "7")


@pytest.mark.parametrize("damage", ["delete", "swap"])
def test_a_changed_finished_store_is_never_reused(damage, tmp_path):
    args = [*RUN, "--out", str(tmp_path), "--method", "median", "--period", "month", "--context-days", "20"]
    assert CliRunner().invoke(app, args).exit_code == 0
    chunks = sorted((tmp_path / "mosaic.zarr" / "reflectance").rglob("c/*/*/*/*"))
    assert len(chunks) >= 1
    if damage == "delete":
        chunks[0].unlink()
    else:
        other = sorted((tmp_path / "mosaic.zarr" / "clear_count").rglob("c/*/*/*"))[0]
        chunks[0].write_bytes(other.read_bytes())
    msg = _fails(*args)
    assert "was changed after it was written" in msg and "mosaic.zarr" in msg


def test_a_huge_area_needs_yes_and_says_its_size(tmp_path):
    # 1 x 1 degree at 10 m: ~1e10 pixels — refused before any pixel is read, with the size
    msg = _fails("run", "--stac", bundled_catalog(), "--bbox", "3.5,50.5,4.5,51.5", "--start", "2019-08-01",
                 "--end", "2019-08-31", "--out", str(tmp_path), "--max-pixels", "1e6")
    assert "million pixels" in msg and "--yes" in msg
    assert not (tmp_path / "cube.zarr").exists()


def test_a_date_without_data_is_named_and_all_without_data_is_an_error(tmp_path):
    """Items whose proj:epsg is wrong read as no data: one such date is named, all of them are an error."""
    import shutil

    src = Path(bundled_catalog()).parent
    cat = tmp_path / "cat"
    shutil.copytree(src, cat)
    items = sorted(cat.glob("*/*.json"))
    days = [json.loads(p.read_text())["properties"]["datetime"][:10] for p in items]
    inside = [p for p, d in zip(items, days) if "2019-08-01" <= d <= "2019-08-31"]

    def break_epsg(path):
        it = json.loads(path.read_text())
        for a in it["assets"].values():
            if "proj:code" in a:
                a["proj:code"] = "EPSG:32610"  # a zone on the other side of the world
            if "proj:epsg" in a:
                a["proj:epsg"] = 32610
        for k in ("proj:code", "proj:epsg"):
            if k in it["properties"]:
                it["properties"][k] = "EPSG:32610" if k == "proj:code" else 32610
        path.write_text(json.dumps(it))

    w, s_, e, n = json.loads(items[0].read_text())["bbox"]
    bbox = f"{w + (e - w) * 0.2},{s_ + (n - s_) * 0.2},{e - (e - w) * 0.2},{n - (n - s_) * 0.2}"
    break_epsg(inside[0])
    args = ["run", "--stac", str(cat / "collection.json"), "--bbox", bbox, "--start", "2019-08-01", "--end",
            "2019-08-31", "--method", "median", "--device", "cpu"]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "one" / "run.json").read_text())
    bad_day = json.loads(inside[0].read_text())["properties"]["datetime"][:10]
    assert manifest["dates_without_data"] == [bad_day]
    assert "no data was read over the area" in " ".join(r.output.split())
    for p in items:
        break_epsg(p)
    msg = _fails(*args, "--out", str(tmp_path / "all"))
    assert "no data over the area" in msg


def test_a_killed_worker_is_reported_and_the_output_is_identical(tmp_path):
    import psutil
    import xarray as xr

    cat = tmp_path / "catalog"
    subprocess.run([sys.executable, "-m", "cloudfree.cli", "demo-data", "--out", str(cat), "--size", "240",
                    "--dates", "12"], check=True, capture_output=True)
    base = [sys.executable, "-m", "cloudfree.cli", "run", "--stac", str(cat / "items.json"), "--start", "2024-06-01",
            "--end", "2024-08-31", "--chunk", "48", "--processes", "--workers", "2", "--threads", "1",
            "--device", "cpu", "--method", "median", "--keep-cube"]
    calm = subprocess.run([*base, "--out", str(tmp_path / "calm")], capture_output=True, text=True, timeout=600)
    assert calm.returncode == 0, calm.stderr
    proc = subprocess.Popen([*base, "--out", str(tmp_path / "hit")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    progress = tmp_path / "hit" / "cube.zarr.progress"
    t0 = time.time()
    while time.time() - t0 < 120 and not (progress.exists() and len(list(progress.iterdir())) >= 2):
        time.sleep(0.05)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "spawn" in " ".join(c.cmdline()) or "forkserver" in " ".join(c.cmdline())]
    workers = [w for w in workers if not w.children()] or workers  # the worker, not its nanny
    assert workers, "no worker process found"
    workers[0].kill()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "worker(s) left during the run" in " ".join(err.split())
    a = xr.open_zarr(tmp_path / "calm" / "mosaic.zarr")["reflectance"].values
    b = xr.open_zarr(tmp_path / "hit" / "mosaic.zarr")["reflectance"].values
    np.testing.assert_array_equal(a, b)


def test_an_unreadable_asset_is_named_through_the_cluster_and_can_be_skipped(tmp_path):
    import shutil

    cat = tmp_path / "cat"
    shutil.copytree(Path(bundled_catalog()).parent, cat)
    items = sorted(cat.glob("*/*.json"))
    day = next(p for p in items if json.loads(p.read_text())["properties"]["datetime"][:10] == "2019-08-14")
    cog = next(day.parent.glob("*B04*.tif"), None) or sorted(day.parent.glob("*.tif"))[1]
    from tests.test_cube import _garble_tiles

    _garble_tiles(cog)  # the header checks pass; only the pixel read can tell
    args = ["run", "--stac", str(cat / "collection.json"), "--start", "2019-08-01", "--end", "2019-08-31",
            "--method", "median", "--device", "cpu"]
    msg = _fails(*args, "--out", str(tmp_path / "stop"))
    assert "could not read an asset" in msg and "--skip-bad-assets" in msg
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "skip"), "--skip-bad-assets"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "skip" / "run.json").read_text())
    assert manifest["skipped_assets"] and cog.name in " ".join(manifest["skipped_assets"])


def test_a_leftover_half_made_store_does_not_block_the_next_run(tmp_path):
    (tmp_path / "cube.zarr.init").mkdir()
    (tmp_path / "cube.zarr.init" / "zarr.json").write_text("{}")  # what a kill during creation leaves
    r = CliRunner().invoke(app, [*RUN, "--out", str(tmp_path), "--method", "median", "--keep-cube"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "cube.zarr.init").exists()


def test_a_stac_server_that_never_answers_times_out(monkeypatch):
    import socket
    import threading

    from cloudfree.catalog.search import CatalogError, SearchRequest, search

    monkeypatch.setenv("CLOUDFREE_STAC_TIMEOUT", "1")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(20)], daemon=True).start()
    t0 = time.time()
    with pytest.raises(CatalogError, match="timed out"):
        search(f"http://127.0.0.1:{srv.getsockname()[1]}", SearchRequest(None, "2024-01-01", "2024-02-01"))
    assert time.time() - t0 < 30  # bounded: a few retries with back-off, then a clear error
    srv.close()


def test_an_asset_replaced_in_place_is_new_data(tmp_path):
    import shutil

    from cloudfree.catalog.sources import read_static_items
    from cloudfree.cube.store import items_digest

    cat = tmp_path / "cat"
    shutil.copytree(Path(bundled_catalog()).parent, cat)
    before = items_digest(read_static_items(str(cat / "collection.json")))
    tif = sorted(cat.glob("*/B04.tif"))[0]
    tif.write_bytes(tif.read_bytes() + b"\0")  # same href, other bytes
    assert items_digest(read_static_items(str(cat / "collection.json"))) != before


@pytest.mark.parametrize("option", [("--chunk", "1"), ("--chunk", "0"), ("--resolution", "0"), ("--resolution", "-10"),
                                    ("--max-dates", "0"), ("--context-days", "-5"), ("--max-cloud", "150")])
def test_numbers_out_of_range_are_named(option, tmp_path):
    msg = _fails(*RUN, "--out", str(tmp_path), *option)
    assert option[0] in msg


@pytest.mark.parametrize("args", [("--size", "0"), ("--dates", "0")])
def test_demo_data_numbers_are_checked(args, tmp_path):
    assert args[0] in _fails("demo-data", "--out", str(tmp_path), *args)


def test_an_out_that_is_a_file_is_named(tmp_path):
    f = tmp_path / "out.txt"
    f.write_text("not a folder")
    msg = _fails(*RUN, "--out", str(f), "--method", "median")
    assert "out.txt" in msg


def test_a_full_disk_is_a_write_error_not_an_asset_error(tmp_path):
    import errno

    from cloudfree.cube.store import _write_failure

    inner = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise inner
        except OSError as e:
            raise Exception("RasterioIOError-looking wrapper") from e
    except Exception as outer:
        assert _write_failure(outer, tmp_path) == "No space left on device"
    assert _write_failure(Exception("RasterioIOError('Read failed')"), tmp_path) is None


def test_a_cog_from_another_method_is_rewritten(tmp_path):
    import rasterio

    args = [*RUN, "--out", str(tmp_path)]
    assert CliRunner().invoke(app, [*args, "--method", "median"]).exit_code == 0
    import shutil

    shutil.rmtree(tmp_path / "mosaic.zarr")  # what the mismatch error tells the user to do
    r = CliRunner().invoke(app, [*args, "--method", "mosaicking"])
    assert r.exit_code == 0, r.output
    (label,) = json.loads((tmp_path / "run.json").read_text())["periods"]
    with rasterio.open(tmp_path / f"cloudfree_{label}.tif") as src:
        assert src.tags()["method"] == "mosaicking"


def test_signing_retries_then_names_what_failed():
    from cloudfree.catalog.search import CatalogError, with_retries

    calls = []

    def flaky(item):
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("token service busy")
        return item

    assert with_retries(flaky, "sign", backoff=0.01)("x") == "x" and len(calls) == 3
    with pytest.raises(CatalogError, match="could not sign after 3 tries: always down"):
        with_retries(lambda i: (_ for _ in ()).throw(ConnectionError("always down")), "sign", backoff=0.01)("x")
