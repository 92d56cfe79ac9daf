import json

import pytest
from typer.testing import CliRunner

from cloudfree.cli import app


@pytest.fixture(scope="module")
def cube_path(stac_url, demo_items, demo_bbox, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cube.zarr"
    r = CliRunner().invoke(app, ["cube", "--stac", str(demo_items), "--bbox", demo_bbox, "--start", "2024-03-01",
                                 "--end", "2024-07-31", "--out", str(out), "--chunk", "64"])
    assert r.exit_code == 0, r.output
    assert "cube written" in r.output and "Dask dashboard: http" in r.output
    return out


def test_search_lists_items(demo_items, demo_bbox):
    r = CliRunner().invoke(app, ["search", "--stac", str(demo_items), "--bbox", demo_bbox, "--start", "2024-03-01",
                                 "--end", "2024-03-20"])
    assert r.exit_code == 0 and r.output.count("SYNTH_S2_L2A") == 2


def test_train_then_evaluate_from_cube(cube_path, tmp_path):
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--arch", "timegate_unet", "--cube", str(cube_path), "--out", str(run), "--steps", "3", "--batch", "2",
                                 "--crop", "32", "--width", "8", "--max-dates", "5", "--ckpt-every", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert (run / "last.safetensors").exists()
    rep = tmp_path / "report"
    r = CliRunner().invoke(app, ["evaluate", "--cube", str(cube_path), "--out", str(rep), "--model",
                                 str(run / "last.safetensors")])
    assert r.exit_code == 0, r.output
    summary = json.loads((rep / "report.json").read_text())["summary"]
    assert set(summary["methods"]) == {"model", "least_cloudy", "mosaicking", "median", "interpolation"}
    assert "SYNTHETIC" in (rep / "report.md").read_text()


def test_evaluate_in_windows(cube_path, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for out, window in ((whole, "4096"), (parts, "48")):
        r = CliRunner().invoke(app, ["evaluate", "--cube", str(cube_path), "--out", str(out), "--model", "none",
                                     "--window", window])
        assert r.exit_code == 0, r.output
    n_whole = json.loads((whole / "report.json").read_text())["summary"]["n_examples"]
    n_parts = json.loads((parts / "report.json").read_text())["summary"]["n_examples"]
    assert n_parts > n_whole >= 1  # every window contributes its own held-out examples


def test_train_with_real_mask_bank(cube_path, shared_data, tmp_path):
    r = CliRunner().invoke(app, ["train", "--arch", "timegate_unet", "--cube", str(cube_path), "--out", str(tmp_path), "--steps", "2", "--batch", "2",
                                 "--crop", "32", "--width", "8", "--max-dates", "4", "--ckpt-every", "2", "--device", "cpu",
                                 "--mask-bank", str(shared_data / "real-clouds-slovenia" / "CLM.npy")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "last.safetensors").exists()


def test_train_trains_the_default_model_and_resumes(shared_data, tmp_path):
    """`cloudfree train` trains the default per-pixel model (any registered model) on the real series
    of a static catalog, through the one training loop; a second call goes on from where it stopped."""
    from cloudfree.models import load_checkpoint

    base = ["train", "--catalog", str(shared_data / "real-s2-l2a" / "catalog.json"), "--collection",
            "gfmap_optical_cube", "--out", str(tmp_path), "--device", "cpu"]
    r = CliRunner().invoke(app, base + ["--steps", "3"])
    assert r.exit_code == 0, r.output
    assert "trained 3 steps of pixel_timegate" in r.output
    net, info = load_checkpoint(tmp_path / "best.safetensors")
    assert info["config"]["arch"] == "pixel_timegate" and info["step"] == 3 and "val_psnr" in info
    r = CliRunner().invoke(app, base + ["--steps", "5"])
    assert r.exit_code == 0, r.output
    assert "resumed from step 3" in r.output and "trained 5 steps" in r.output
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert "val_reference_psnr" in logged[0]  # median and interpolation on the same validation pixels
    assert [rec["step"] for rec in logged if "val_psnr" in rec] == [3, 5]


def test_train_refuses_data_the_architecture_cannot_use(tmp_path):
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--steps", "1"])
    assert r.exit_code == 2 and "give --catalog" in r.output
    r = CliRunner().invoke(app, ["train", "--arch", "timegate_unet", "--out", str(tmp_path), "--steps", "1"])
    assert r.exit_code == 2 and "--cube" in r.output
    r = CliRunner().invoke(app, ["train", "--arch", "no_such_model", "--out", str(tmp_path), "--steps", "1"])
    assert r.exit_code == 2 and "unknown architecture" in r.output
