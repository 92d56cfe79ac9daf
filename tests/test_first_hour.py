"""What a new user meets in the first hour: a memory budget that holds, clear words before any work,
Ctrl-C that keeps everything and resumes, and --help that says units and choices."""

from __future__ import annotations

import json
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from cloudfree.cli import app
from cloudfree.cluster import BASE_BYTES, block_bytes, parse_memory, plan_memory


@pytest.mark.parametrize("limit_gib", [1, 2, 4, 8, 24])
@pytest.mark.parametrize("threads", [1, 2, 16])
def test_memory_plan_stays_under_the_budget(limit_gib, threads):
    plan = plan_memory(limit_gib * 2**30, threads=threads, n_bands=12, n_dates=12)
    assert plan.estimate <= plan.limit
    assert plan.estimate == BASE_BYTES + plan.in_flight * block_bytes(plan.chunk, 12, 12)
    assert 1 <= plan.in_flight <= threads and 1 <= plan.batch <= 16
    bigger = plan_memory(2 * limit_gib * 2**30, threads=threads, n_bands=12, n_dates=12)
    assert (bigger.chunk, bigger.in_flight) >= (plan.chunk, plan.in_flight) or bigger.chunk * bigger.in_flight >= plan.chunk


def test_a_streamed_plan_counts_its_reads_in_flight():
    """A streamed run holds a stripe's row of reads beside its blocks: the plan counts them (so 2 GB
    on 2 cores gets smaller blocks than the cube path), whatever the area; on a GPU host the blocks'
    work is on the device, so a full Sentinel-2 block size still fits."""
    from cloudfree.cluster import stream_bytes

    for limit, threads, gpu in [(2 * 10**9, 2, False), (8 * 2**30, 4, False), (100 * 2**30, 16, True)]:
        plan = plan_memory(limit, threads=threads, n_bands=12, n_dates=12, streamed=True, gpu=gpu)
        cube = plan_memory(limit, threads=threads, n_bands=12, n_dates=12)
        reads = stream_bytes(plan.chunk, 12, 12, plan.in_flight, gpu)
        blocks = 0 if gpu else plan.in_flight * block_bytes(plan.chunk, 12, 12)
        assert plan.estimate == BASE_BYTES + blocks + reads <= plan.limit
        assert plan.chunk <= cube.chunk
    assert plan_memory(2 * 10**9, threads=2, streamed=True).chunk < plan_memory(2 * 10**9, threads=2).chunk
    assert plan_memory(100 * 2**30, threads=16, streamed=True, gpu=True).chunk == 2048
    with pytest.raises(ValueError, match="allows --chunk 256"):
        plan_memory(2 * 10**9, threads=2, streamed=True, chunk=1024)


def test_memory_words_are_checked():
    assert parse_memory("auto") is None and parse_memory("2GB") == 2 * 10**9
    with pytest.raises(ValueError, match="not a size"):
        parse_memory("lots")
    with pytest.raises(ValueError, match="too small"):
        parse_memory("100MB")
    with pytest.raises(ValueError, match="allows --chunk"):
        plan_memory(2 * 2**30, threads=2, n_bands=12, n_dates=12, chunk=4096)


def _fail(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return " ".join(r.output.split())


def test_bad_words_fail_before_any_work(demo_items, demo_bbox, tmp_path):
    out = tmp_path / "never"
    common = ["run", "--stac", str(demo_items), "--bbox", demo_bbox, "--out", str(out)]
    assert "after the end date" in _fail(*common, "--start", "2024-08-01", "--end", "2024-06-01")
    assert "YYYY-MM-DD" in _fail(*common, "--start", "June", "--end", "2024-06-01")
    assert "--period" in _fail(*common, "--start", "2024-06-01", "--end", "2024-08-01", "--period", "weekly")
    assert "unknown --method" in _fail(*common, "--start", "2024-06-01", "--end", "2024-08-01", "--method", "mean")
    assert "allows --chunk" in _fail(*common, "--start", "2024-06-01", "--end", "2024-08-01", "--chunk", "8192",
                                     "--memory-limit", "2GB")
    assert not out.exists()  # nothing was written for any of them


def test_every_option_has_help_and_defaults_agree():
    import typer.main

    cmd = typer.main.get_command(app)
    devices = {}
    for name in cmd.commands:
        for p in cmd.commands[name].params:
            assert p.help, f"{name} --{p.name} has no description"
            if p.name == "device":
                devices[name] = p.default
            if p.name in ("start", "end"):
                assert "YYYY-MM-DD" in p.help
            if p.name == "bbox":
                assert "west,south,east,north" in p.help
            if p.name in ("chunk", "patch", "overlap"):
                assert "pixels" in p.help
    assert set(devices.values()) == {"auto"}, devices
    method = next(p for p in cmd.commands["run"].params if p.name == "method")
    assert all(m in method.help for m in ("auto", "model", "median", "mosaicking", "least_cloudy", "interpolation"))


def test_run_under_a_memory_budget_writes_what_it_says(demo_items, demo_bbox, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["run", "--stac", str(demo_items), "--bbox", demo_bbox, "--start", "2024-06-01",
                                 "--end", "2024-07-31", "--out", str(out), "--memory-limit", "1GB", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "memory budget 0.9 GiB: blocks of" in text
    chunk = int(text.split("blocks of ")[1].split(" px")[0])
    ds = xr.open_zarr(out / "mosaic.zarr")
    assert ds.chunks["y"][0] == min(chunk, ds.sizes["y"])
    assert np.isfinite(ds["reflectance"].values).mean() > 0.9


def test_ctrl_c_keeps_everything_and_the_rerun_resumes(tmp_path):
    """A real SIGINT mid-cube: one line, exit 130, no traceback; the same command resumes."""
    cat = tmp_path / "catalog"
    subprocess.run([sys.executable, "-m", "cloudfree.cli", "demo-data", "--out", str(cat), "--size", "240",
                    "--dates", "12"], check=True, capture_output=True)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cloudfree.cli", "run", "--stac", str(cat / "items.json"), "--start", "2024-06-01",
           "--end", "2024-08-31", "--out", str(out), "--chunk", "48", "--threads", "1", "--device", "cpu",
           "--keep-cube"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = out / "cube.zarr.progress"
    t0 = time.time()
    while time.time() - t0 < 120 and not (progress.exists() and len(list(progress.iterdir())) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted:" in err and "run the same command again to resume" in err
    assert not (out / "run.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "cube resumed" in done.stderr
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete"


def test_cli_module_runs_as_a_script():
    r = subprocess.run([sys.executable, "-m", "cloudfree.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "demo" in r.stdout


def test_a_ctrl_c_lost_inside_a_callback_stops_the_run_at_the_next_region():
    """A KeyboardInterrupt raised inside a garbage-collector callback is printed and lost (CI saw a
    run go on to the end that way): the guard remembers the signal and the next progress update
    raises it."""
    import os

    from cloudfree.progress import StageProgress, interrupt_guard

    with interrupt_guard(), StageProgress() as stages:
        update = stages("outputs (period x tile)")
        update(0, 3)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        except KeyboardInterrupt:
            pass  # where the callback swallowed it
        with pytest.raises(KeyboardInterrupt):
            update(1, 3)
    update(2, 3)  # after the run, the signal is forgotten


def test_the_lost_ctrl_c_prints_no_traceback():
    """Python prints an exception lost in a callback through ``sys.unraisablehook``: under the
    guard a remembered Ctrl-C is not printed (CI saw its traceback); anything else still is."""
    import types

    from cloudfree import progress

    seen = []
    hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with progress.interrupt_guard():
            progress._INTERRUPTED.set()  # as the signal handler does
            for exc in (KeyboardInterrupt(), ValueError("other")):
                sys.unraisablehook(types.SimpleNamespace(exc_value=exc))
    finally:
        sys.unraisablehook = hook
    assert [type(i.exc_value) for i in seen] == [ValueError]


def test_freed_heap_goes_back_to_the_os_and_the_trimmer_stops_when_idle(monkeypatch):
    """Blocks' tasks hand freed heap back (glibc keeps it otherwise): a fragmented heap's free pages
    leave the process, and the timed trimming ends once no task has called for it."""
    import threading
    import time

    import numpy as np
    import psutil

    from cloudfree import heap

    monkeypatch.setattr(heap, "IDLE_AFTER", 0.5)
    proc = psutil.Process()
    chunks = [np.ones(40_000, np.float64) for _ in range(8000)]  # 320 KB each, below glibc's mmap threshold
    keep = chunks[::50]  # pins at the top of the heap keep glibc from shrinking it by itself
    del chunks
    before = proc.memory_info().rss
    assert heap.release_heap()
    after = proc.memory_info().rss
    assert before - after > 500 * 2**20, (before >> 20, after >> 20)
    assert any(t.name == "cloudfree-heap-trim" for t in threading.enumerate())
    time.sleep(1.2)
    assert not any(t.name == "cloudfree-heap-trim" for t in threading.enumerate())
    del keep


# --- the first hour, part 2 (issue: a lean install and the defects a new user hits) ---

def test_shipped_model_names_are_accepted_and_unknown_ones_named(tmp_path):
    from cloudfree.catalog import bundled_catalog
    from cloudfree.errors import InputError
    from cloudfree.job import JobRequest

    for name in ("unet_synthetic", "unet_synthetic.safetensors", "default"):
        req = JobRequest.from_options(bundled_catalog(), "2019-08-01", "2019-08-31", tmp_path, model=name)
        assert Path(req.model).is_file() and Path(req.model).parent.name == "weights"
    with pytest.raises(InputError, match="unet_synthetic"):
        JobRequest.from_options(bundled_catalog(), "2019-08-01", "2019-08-31", tmp_path, model="no_such_model")


def test_the_learned_mask_without_its_extra_is_an_error_naming_it(tmp_path, monkeypatch):
    import cloudfree.cube.masks as masks
    from cloudfree.catalog import bundled_catalog

    monkeypatch.setattr(masks, "mask_model_available", lambda: "pip install 'cloudfree[masks]'")
    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--mask", "model"])
    assert r.exit_code == 2 and "cloudfree[masks]" in r.output and "Traceback" not in r.output
    assert "cloudfree[masks]" in " ".join(CliRunner().invoke(app, ["run", "--help"]).output.split())


def test_verbose_is_accepted_after_the_command(tmp_path):
    import subprocess
    import sys

    from cloudfree.catalog import bundled_catalog

    r = subprocess.run([sys.executable, "-m", "cloudfree.cli", "search", "--stac", bundled_catalog(), "--start",
                        "2019-08-01", "--end", "2019-08-10", "--verbose"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "20190804" in r.stdout


def test_a_finished_run_leaves_no_lock_file(tmp_path):
    from cloudfree.catalog import bundled_catalog

    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--method", "median", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / ".cloudfree.lock").exists()


def test_a_refused_run_writes_nothing_into_the_other_runs_folder(tmp_path):
    from cloudfree.catalog import bundled_catalog

    base = ["run", "--stac", bundled_catalog(), "--out", str(tmp_path), "--method", "median", "--device", "cpu",
            "--period", "month"]
    assert CliRunner().invoke(app, [*base, "--start", "2019-08-01", "--end", "2019-08-31"]).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    r = CliRunner().invoke(app, [*base, "--start", "2019-09-01", "--end", "2019-09-30"])
    assert r.exit_code == 2 and "different request" in r.output, r.output
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before  # not a file added or touched


def test_a_swapped_bbox_is_hinted_with_the_users_dates(tmp_path):
    from cloudfree.catalog import bundled_catalog

    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--bbox", "50.744,4.059,50.748,4.067",
                                 "--start", "2019-08-01", "--end", "2019-08-31", "--out", str(tmp_path)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert "dates 2019-08-01..2019-08-31" in text and "longitude and latitude swapped" in text
    assert "4.059,50.744,4.067,50.748" in text


def test_the_estimated_peak_is_for_the_job_not_the_budget(tmp_path):
    from cloudfree.catalog import bundled_catalog
    from cloudfree.cluster import BASE_BYTES, plan_memory

    plan = plan_memory(16 * 2**30, threads=2, n_bands=10, n_dates=12)
    assert plan.peak_for(64, 64) < BASE_BYTES + (plan.estimate - BASE_BYTES) / 100
    assert plan.peak_for(10 * plan.chunk, 10 * plan.chunk) == plan.estimate
    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--method", "median", "--device", "cpu"])
    text = " ".join(r.output.split())
    peak = float(text.split("estimated peak memory ")[1].split(" GiB")[0])
    assert peak < 2.0, text


def test_quicklooks_without_red_green_blue_are_false_colour_and_say_so():
    from cloudfree.outputs.files import display_bands

    assert display_bands(["B02", "B03", "B04", "B08"]) == (["B04", "B03", "B02"], "true colour")
    trio, what = display_bands(["B05", "B06", "B07", "B8A", "B11", "B12"])
    assert trio == ["B12", "B8A", "B05"] and what.startswith("false colour")
    assert display_bands(["B04", "B08"])[1].startswith("false colour")


def test_the_band_coordinate_keeps_its_type_through_zarr(tmp_path):
    from cloudfree.catalog import bundled_catalog
    from cloudfree.catalog.sources import read_static_items
    from cloudfree.cube.load import load_cube

    cube = load_cube(read_static_items(bundled_catalog())[:2], None, bands=["B02", "B04"], chunk=64)
    cube[["reflectance"]].to_zarr(tmp_path / "c.zarr")
    back = xr.open_zarr(tmp_path / "c.zarr")
    assert cube.band.dtype == back.band.dtype and cube.band.dtype.kind == "U"


def test_ctrl_c_while_a_streamed_run_writes_is_one_line(tmp_path, demo_items, demo_bbox):
    """SIGINT while the outputs are computed on the local cluster: "interrupted" once, no traceback
    from the client's cancelled gathers."""
    cmd = [sys.executable, "-m", "cloudfree.cli", "run", "--stac", str(demo_items), "--bbox", demo_bbox, "--start",
           "2024-03-01", "--end", "2024-06-30", "--period", "month", "--out", str(tmp_path / "out"), "--device", "cpu",
           "--chunk", "40", "--no-validate"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "cube streamed" not in seen:
        line = p.stderr.readline()
        if not line:
            break
        seen += line
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    text = seen + err
    assert p.returncode in (0, 130), text
    assert "Traceback" not in text and text.count("interrupted") <= 1, text
