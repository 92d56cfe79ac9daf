"""The core install has no torch: the default model and the block reads' device work run in numpy,
with the pixels of the torch path (within 1e-5), and what needs torch says which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import cloudfree
from cloudfree import extras
from cloudfree.catalog import bundled_catalog
from cloudfree.models import load_checkpoint
from cloudfree.models.checkpoint import default_weights
from cloudfree.models.pixel_features import CONTEXT
from cloudfree.reconstruct.tiles import TileConfig, pixels_numpy, predict_pixels

BLOCK_TORCH = "import sys\nfor m in ('torch', 'torchvision', 'torchmetrics', 'terratorch'):\n    sys.modules[m] = None\n"
"""A ``sitecustomize`` that makes ``import torch`` fail in a process and its Dask workers, as on the core install."""


@pytest.fixture(scope="module")
def real_series():
    """The bundled REAL L2A series (64 x 64 px, 10 bands), August-September 2019, as reflectance."""
    items = cloudfree.search(bundled_catalog(), "2019-07-10", "2019-10-20")
    cube = cloudfree.load_cube(items, None, chunk=64).compute()
    x = cube["reflectance"].values.astype(np.float32)
    clear = cube["clear"].values.astype(bool) & np.isfinite(x).all(1)
    days = cube.time.values.astype("datetime64[D]").astype(float)
    return x, clear, days, [str(b) for b in cube.band.values]


def test_the_numpy_model_equals_the_torch_model_on_a_real_series(real_series):
    x, clear, days, bands = real_series
    tm, _ = load_checkpoint(default_weights(), backend="torch")
    nm, _ = load_checkpoint(default_weights(), backend="numpy")
    assert isinstance(tm, torch.nn.Module) and not isinstance(nm, torch.nn.Module)
    dt = (days - days[len(days) // 2]).astype(np.float32)[None]
    for sel in (bands, ["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A", "B11", "B12"]):
        idx = [bands.index(b) for b in sel]
        xs = x[None][:, :, idx]
        with torch.inference_mode():
            ref = tm(torch.from_numpy(xs), torch.from_numpy(clear[None]), torch.from_numpy(dt), bands=sel)
        got = nm(xs, clear[None], dt, bands=sel)
        for k in ("output", "temporal", "weights", "coverage", "kept"):
            np.testing.assert_allclose(got[k], ref[k].numpy(), atol=1e-5, rtol=0, err_msg=k)
        assert float(np.abs(got["output"]).mean()) > 0.01  # real reflectance, not zeros


def test_a_block_through_numpy_equals_it_through_torch_with_context_and_departure(real_series):
    x, clear, days, bands = real_series
    target = len(days) // 2
    dt = (days - days[target]).astype(np.float32)
    m, q = CONTEXT + 16, 16  # the context margin and the departure's reach, as a run reads them
    pad = ((0, 0), (0, 0), (m, m), (m, m))  # the 64 px patch mirrored out to a block with its margin
    x, clear = np.pad(x, pad, mode="reflect"), np.pad(clear, pad[1:], mode="reflect")
    core = x[:, :, m - q : 64 + m + q, m - q : 64 + m + q]
    cfg = TileConfig(device="cpu")
    ref = predict_pixels(core, clear, dt=dt, model=default_weights(), cfg=cfg, bands=bands, margin=m, reach=q)
    got = pixels_numpy(core, clear, dt=dt, model=default_weights(), cfg=cfg, bands=bands, margin=m, reach=q,
                       pixels_per_batch=100)  # batches of another size: the model is per pixel
    assert got.shape == ref.shape == (len(bands), 64, 64)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [2, 3, 6])
def test_numpy_enlarges_the_coarse_bands_as_the_device_does(factor):
    from cloudfree.reconstruct.model_reads import enlarge
    from cloudfree.reconstruct.reads_numpy import enlarge_np

    rng = np.random.default_rng(factor)
    a = rng.integers(1, 12000, (4, 23, 29)).astype(np.int32)
    a[rng.random(a.shape) < 0.1] = 0
    for nodata, nearest in ((0, False), (None, False), (None, True)):
        ref = enlarge(torch.from_numpy(a), factor, nodata, nearest).numpy()
        np.testing.assert_array_equal(enlarge_np(a, factor, nodata, nearest), ref)


def _streamed(tmp_path, name, recipe_method="auto", **kw):
    out = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / name, device="cpu", chunk=32,
                        period="month", context_days=20, dilate=1, method=recipe_method, echo=lambda *a, **k: None, **kw)
    return xr.open_zarr(out["mosaic"]).load()


def test_a_streamed_run_in_numpy_gives_the_pixels_of_torch(tmp_path, monkeypatch):
    """The block reads (60 m-free 10-band series: 20 m bands enlarged, SCL grown by --dilate) and
    every candidate a recipe may hold, torch against numpy in one process."""
    ref = {m: _streamed(tmp_path, f"torch-{m}", m) for m in ("auto", "interpolation")}
    monkeypatch.setattr(extras, "has_torch", lambda: False)
    for m, r in ref.items():
        got = _streamed(tmp_path, f"numpy-{m}", m)
        np.testing.assert_allclose(got["reflectance"].values, r["reflectance"].values, atol=1e-5, rtol=0, err_msg=m)
        np.testing.assert_array_equal(got["clear_count"].values, r["clear_count"].values)
        assert np.isfinite(got["reflectance"].values).mean() > 0.99


def _without_torch(args: list[str], tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    site = tmp_path / "no-torch"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "cloudfree.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=tmp_path)


@pytest.mark.slow
def test_cloudfree_run_without_torch_installed_gives_the_pixels_of_a_run_with_it(tmp_path):
    args = ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-09-30", "--period", "month",
            "--context-days", "20", "--chunk", "32", "--dilate", "1"]
    r = _without_torch([*args, "--out", str(tmp_path / "core")], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    said = r.stdout + r.stderr
    assert "validation 2019-08" in said and "done (" in said
    ref = _streamed(tmp_path, "with-torch")
    got = xr.open_zarr(tmp_path / "core" / "mosaic.zarr").load()
    np.testing.assert_allclose(got["reflectance"].values, ref["reflectance"].values, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got["clear_count"].values, ref["clear_count"].values)
    import json

    manifest = json.loads((tmp_path / "core" / "run.json").read_text())
    assert manifest["status"] == "complete"


def test_what_needs_torch_names_the_extra_to_install(tmp_path):
    base = ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31", "--out", str(tmp_path / "o")]
    r = _without_torch([*base, "--device", "cuda"], tmp_path)
    assert r.returncode == 2 and "pip install 'cloudfree[gpu]'" in r.stdout + r.stderr
    r = _without_torch(["train", "--out", str(tmp_path / "t"), "--steps", "1"], tmp_path)
    assert r.returncode == 2 and "pip install 'cloudfree[train]'" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_another_architecture_without_torch_names_the_extra(monkeypatch):
    from cloudfree.errors import MissingExtraError
    from cloudfree.models.checkpoint import unet_weights

    monkeypatch.setattr(extras, "has_torch", lambda: False)
    with pytest.raises(MissingExtraError, match=r"cloudfree\[gpu\]"):
        load_checkpoint(unet_weights())
    model, info = load_checkpoint(default_weights())
    assert type(model).__name__ == "NumpyPixelTimeGate" and info["config"]["arch"] == "pixel_timegate"


HEAVY = ("distributed", "odc.stac", "rasterio", "torch", "cloudfree.reconstruct.dataset", "cloudfree.cube.load")
"""What a wrong argument must be answered without: the cluster, the readers, the model and the graph code."""


@pytest.mark.parametrize("wrong", [["--start", "2019-13-01"], ["--bands", "B99"], ["--device", "cudax"],
                                   ["--exclude-scl", "99"], ["--chunk", "0"], ["--period", "fortnight"]])
def test_a_wrong_argument_is_answered_before_the_heavy_modules_load(tmp_path, wrong):
    args = {"--stac": bundled_catalog(), "--out": str(tmp_path / "o"), "--start": "2019-08-01", "--end": "2019-09-30"}
    args.update(dict(zip(wrong[::2], wrong[1::2])))
    code = ("import sys\nfrom cloudfree.cli import main\n"
            f"sys.argv = ['cloudfree', 'run', *{[v for kv in args.items() for v in kv]!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
            f"print('EXIT', code, [m for m in {HEAVY!r} if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    exit_line = [ln for ln in r.stdout.splitlines() if ln.startswith("EXIT")]
    assert exit_line == ["EXIT 2 []"], r.stdout + r.stderr
    assert "error" in (r.stdout + r.stderr).lower() and not (tmp_path / "o").exists()
