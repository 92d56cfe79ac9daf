"""The band-aware PixelTimeGate: what a pixel's output may and may not depend on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import cloudfree
from cloudfree.models import load_checkpoint
from cloudfree.models.checkpoint import default_weights
from cloudfree.models.pixel import EDGE_CAP, cloud_distance
from cloudfree.reconstruct.tiles import TileConfig


def _cube(bands=("B02", "B03", "B04", "B08"), t=9, h=37, w=29, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.02, 0.35, (t, len(bands), h, w)).astype(np.float32)
    clear = (rng.random((t, h, w)) > 0.35).astype(np.uint8)
    clear[:, 10:14, 5:25] = 0  # a cloud band across several dates
    times = np.datetime64("2024-05-01") + np.arange(t) * np.timedelta64(5, "D")
    return xr.Dataset({"reflectance": (("time", "band", "y", "x"), x), "clear": (("time", "y", "x"), clear)},
                      coords={"time": times.astype("datetime64[ns]"), "band": list(bands),
                              "y": 5_000_000 - np.arange(h) * 10.0, "x": 600_000 + np.arange(w) * 10.0})


@pytest.mark.parametrize("bands", [("B02", "B03", "B04", "B08"), ("B05", "B06", "B07", "B8A", "B11", "B12")])
def test_output_is_the_same_for_any_tiling_and_patch_size(bands):
    cube = _cube(bands)
    runs = []
    for chunk, patch in ((64, 256), (7, 64), (11, 32)):
        ds = cloudfree.reconstruct(cube.chunk({"time": 1, "y": chunk, "x": chunk}), "2024-05-11", "2024-05-31",
                                   tiles=TileConfig(patch=patch, overlap=4, device="cpu"), chunk=chunk, method="model")
        assert ds.attrs["method"] == "model"
        runs.append(ds["reflectance"].values)
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], atol=1e-4, equal_nan=True)


def test_clear_target_passes_through_unless_next_to_a_flagged_cloud_or_off_the_series():
    cube = _cube()
    clear = cube["clear"].values.copy()
    clear[4] = 1
    clear[4, 10:14, 5:25] = 0  # the target date: clear but for one cloud
    cube["clear"] = (("time", "y", "x"), clear)
    day = str(cube.time.values[4])[:10]  # a period centred on an acquisition: that date is the target
    ds = cloudfree.reconstruct(cube, day, day, context_days=20, method="model").compute()
    out = ds["reflectance"].isel(time=0).values
    target = cube["reflectance"].isel(time=4).values
    usable = cube["clear"].isel(time=4).values.astype(bool)
    far = usable & (cloud_distance(usable) > 3)
    assert far.sum() > 300 and (usable & ~far).sum() > 50
    same = (out[:, far] == target[:, far]).all(0)
    assert same.mean() > 0.97  # the rest disagree with their series by > 4 robust z (random toy data)
    assert (np.abs(out[:, usable & ~far] - target[:, usable & ~far]).max(0) > 1e-6).mean() > 0.5
    off = cloudfree.reconstruct(cube, day, day, context_days=20, tiles=TileConfig(pass_through=False),
                                method="model").compute()
    changed = np.abs(off["reflectance"].isel(time=0).values[:, far] - target[:, far]).max(0) > 1e-6
    assert changed.mean() > 0.5  # the flag turns it off: the series decides


def test_band_aware_checkpoint_serves_subsets_and_says_so(tmp_path):
    from cloudfree.reconstruct.dataset import resolve_method

    for bands in (["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A", "B11", "B12"],
                  [b for b in cloudfree.bands.L2A_BANDS if b not in ("B01", "B09")], list(cloudfree.bands.L2A_BANDS)):
        method, model, reason = resolve_method("auto", bands, None)
        assert method == "model" and Path(model) == default_weights() and ", ".join(bands) in reason
    net, info = load_checkpoint(default_weights())
    assert "any subset" in info["config"]["serves"]
    x = torch.rand(1, 5, 4, 3, 3) * 0.3
    v = torch.ones(1, 5, 3, 3, dtype=torch.bool)
    dt = torch.tensor([[-20.0, -10.0, 0.0, 10.0, 20.0]])
    out = net(x, v, dt, bands=["B02", "B03", "B04", "B08"])["output"]
    assert out.shape == (1, 4, 3, 3) and torch.isfinite(out).all()


def test_cloud_distance_is_capped_chessboard():
    u = np.ones((1, 20, 20), bool)
    u[0, 10, 10] = False
    d = cloud_distance(u)[0]
    assert d[10, 10] == 0 and d[10, 12] == 2 and d[12, 12] == 2 and d[0, 0] == EDGE_CAP
    assert (cloud_distance(np.ones((2, 4, 4), bool)) == EDGE_CAP).all()


def test_trainer_learns_on_real_series(shared_data, tmp_path):
    """A few steps of the real-series trainer: loss is finite, a checkpoint that loads comes out."""
    from cloudfree.training.pixel import PixelTrainConfig, load_real_series, train_pixel

    series = load_real_series(str(shared_data / "real-s2-l2a" / "catalog.json"), ["gfmap_optical_cube"])
    assert series[0].targets and series[0].sources and series[0].ctx.shape[2:] == series[0].scl.shape[1:]
    res = train_pixel(series, series, tmp_path, PixelTrainConfig(steps=4, pairs=4, pixels=16, val_every=2),
                      log=lambda s: None)
    assert np.isfinite(res["best_val_psnr"])
    net, info = load_checkpoint(tmp_path / "best.safetensors")
    assert info["config"]["arch"] == "pixel_timegate" and "gfmap_optical_cube" in info["train"]
    assert info["config"]["pixel"]["departure"] == {"radius": 16, "gain": 0.75, "min_fraction": 0.05}


def test_a_gap_series_trains_with_its_gaps_as_the_hiding_masks(shared_data):
    """A provider that delivers SCL's clouds as gaps (NaN, as FuseTS and HLS do) still gives
    examples: the target's hidden pixels become gaps (not valid, no value), the truth stays the
    target's clear value. Red and NIR alone (what such services often deliver) is one of the band
    sets drawn."""
    from cloudfree.bands import CLOUD_SHADOW_SCL, L2A_BANDS
    from cloudfree.training.pixel import (
        PixelSampler,
        RealSeries,
        _pasted_pixels,
        load_real_series,
    )

    s = load_real_series(str(shared_data / "real-s2-l2a" / "catalog.json"), ["gfmap_optical_cube"])[0]
    refl = s.refl.copy()
    gaps = np.isin(s.scl, CLOUD_SHADOW_SCL)
    refl[:, :, gaps.any(0)] = np.where(gaps[:, None], np.nan, refl)[:, :, gaps.any(0)]
    gap_series = RealSeries("gaps", refl, s.scl, s.days, s.present).prepare()
    sampler = PixelSampler([gap_series], np.random.default_rng(0), pairs=16, pixels=32)
    n_gap = 0
    for _ in range(10):
        pair = sampler._pair()
        assert pair is not None  # L2A-style sources with values are not needed
        g, t, src, cloud, ys, xs = pair
        idx = np.array(sorted({t, src}))
        series, _, _ = _pasted_pixels(g, t, src, cloud, idx, False, ys, xs, 1.0)
        at_t = series[int(np.flatnonzero(idx == t)[0])][g.present]  # (bands, P) what the target shows
        gap = gaps[src][ys, xs]
        assert np.isnan(at_t[:, gap]).all() and np.isfinite(at_t[:, ~gap]).all()  # a gap, or the source's edge values
        assert np.isfinite(g.refl[t][g.present][:, ys, xs]).all()  # the truth is known at every picked pixel
        n_gap += int(gap.sum())
    assert n_gap > 0
    x, valid, *_ = sampler.batch()
    assert np.isfinite(x).all() and valid.any()
    assert gap_series.gap_series and not s.gap_series
    mixed = PixelSampler([gap_series, s], np.random.default_rng(0), gap_share=0.25)
    assert mixed.p[0] == pytest.approx(0.25)  # a fixed share of gap-series examples, whatever the sizes
    drawn = {tuple(np.flatnonzero(sampler._bands(np.isin(L2A_BANDS, ("B02", "B03", "B04", "B08")))))
             for _ in range(200)}
    assert (L2A_BANDS.index("B04"), L2A_BANDS.index("B08")) in drawn


def test_device_context_features_equal_the_numpy_ones():
    """The GPU path computes the context features with torch; they must be the same numbers."""
    import numpy as np
    import torch

    from cloudfree.models.pixel import context_features, context_features_torch

    rng = np.random.default_rng(3)
    u = rng.random((5, 140, 120)) > 0.15
    u[:, 40:90, 20:70] = False
    u[2] = True  # a fully clear date: distance capped everywhere
    for margin in (0, 31):
        np.testing.assert_array_equal(context_features_torch(torch.from_numpy(u), margin).numpy(),
                                      context_features(u, margin))


def test_stored_dn_decoded_on_the_device_give_the_same_pixels():
    """The model path sends the cube's uint16 DN and decodes them where the model runs: the output
    equals the one from float reflectance, including no-data (DN 0) pixels."""
    import numpy as np

    from cloudfree.models import default_weights
    from cloudfree.models.pixel import CONTEXT
    from cloudfree.reconstruct.tiles import TileConfig, predict_pixels

    rng = np.random.default_rng(4)
    t, c, h, w = 6, 4, 20, 24
    dn = rng.integers(1000, 4000, (t, c, h, w), dtype=np.uint16)
    dn[1, :, :5, :5] = 0
    refl = np.where(dn == 0, np.nan, dn.astype(np.float32) * np.float32(1e-4) + np.float32(-0.1)).astype(np.float32)
    clear = rng.random((t, h + 2 * CONTEXT, w + 2 * CONTEXT)) > 0.2
    clear[1, CONTEXT : CONTEXT + 5, CONTEXT : CONTEXT + 5] = False
    kw = dict(dt=np.linspace(-40, 40, t).astype(np.float32), model=default_weights(), cfg=TileConfig(device="cpu"),
              bands=["B02", "B03", "B04", "B08"], margin=CONTEXT)
    a = predict_pixels(refl, clear, **kw)
    b = predict_pixels(dn, clear, decode=(1e-4, -0.1, 0), **kw)
    np.testing.assert_allclose(b, a, atol=1e-6)
    assert np.isfinite(a).all()


def _terramind_checkpoint(path: Path) -> Path:
    """A pixel_terramind checkpoint around the shipped per-pixel model, its decoder made active."""
    pytest.importorskip("terratorch")
    from cloudfree.models import build_model, save_checkpoint
    from cloudfree.training.terramind import TerraMindTrainConfig, terramind_config

    pixel, info = load_checkpoint(default_weights())
    cfg = terramind_config(info["config"], TerraMindTrainConfig(decoder_width=16))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.pixel.load_state_dict(pixel.state_dict())
    with torch.no_grad():  # trained decoders are not zero: make the correction non-trivial
        model.fuse[-1].weight.normal_(0, 0.05)
    return save_checkpoint(model, cfg, path)


def test_terramind_path_runs_on_a_band_subset_and_keeps_the_target_own_pixels(tmp_path):
    ckpt = _terramind_checkpoint(tmp_path / "tm.safetensors")
    bands = ("B05", "B06", "B07", "B8A", "B11", "B12")
    cube = _cube(bands, h=40, w=36)
    clear = cube["clear"].values.copy()
    clear[4] = 1
    clear[4, 20:30, 8:24] = 0  # the target's own cloud, where other dates see the ground
    cube["clear"] = (("time", "y", "x"), clear)
    day = str(cube.time.values[4])[:10]
    tiles = TileConfig(patch=64, overlap=8, device="cpu")
    ds = cloudfree.reconstruct(cube, day, day, context_days=20, method="model", model=ckpt, tiles=tiles).compute()
    base = cloudfree.reconstruct(cube, day, day, context_days=20, tiles=tiles, method="model").compute()
    out, ref = ds["reflectance"].isel(time=0).values, base["reflectance"].isel(time=0).values
    target = cube["reflectance"].isel(time=4).values
    assert out.shape == (len(bands), 40, 36) and (np.isfinite(out) == np.isfinite(ref)).all() and np.isfinite(ref).mean() > 0.9
    usable = clear[4].astype(bool)
    far = usable & (cloud_distance(usable) > 3)
    kept = (ref[:, far] == target[:, far]).all(0)
    assert kept.mean() > 0.9
    # passed through untouched (up to the float rounding of blending overlapping patches)
    np.testing.assert_allclose(out[:, far][:, kept], target[:, far][:, kept], rtol=0, atol=1e-6)
    hidden = ~usable & np.isfinite(ref).all(0)
    assert hidden.sum() > 100
    assert np.abs(out[:, hidden] - ref[:, hidden]).max() > 1e-4  # the spatial correction acts where it must
    assert ds.attrs["method"] == "model"


def test_the_target_dates_local_departure_carries_to_its_hidden_pixels_for_any_tiling():
    """A target date 20 % brighter than its series where it was seen: its hidden pixels come out
    brighter too (the model's ``departure``), and the same for any block size."""
    rng = np.random.default_rng(3)
    t, h, w, bands = 9, 48, 40, ("B02", "B03", "B04", "B08")
    base = rng.uniform(0.05, 0.3, (1, len(bands), h, w)).astype(np.float32)
    x = (base * rng.uniform(0.97, 1.03, (t, len(bands), 1, 1))).astype(np.float32)
    x[4] *= 1.2  # the target date: brighter as a whole (haze, view angle)
    clear = np.ones((t, h, w), np.uint8)
    clear[4, 16:32, 12:28] = 0  # hidden on the target date
    times = np.datetime64("2024-05-01") + np.arange(t) * np.timedelta64(5, "D")
    cube = xr.Dataset({"reflectance": (("time", "band", "y", "x"), x), "clear": (("time", "y", "x"), clear)},
                      coords={"time": times.astype("datetime64[ns]"), "band": list(bands),
                              "y": 5_000_000 - np.arange(h) * 10.0, "x": 600_000 + np.arange(w) * 10.0})
    day = str(cube.time.values[4])[:10]
    outs = [cloudfree.reconstruct(cube.chunk({"time": 1, "y": c, "x": c}), day, day, context_days=20, chunk=c,
                                  tiles=TileConfig(device="cpu"))["reflectance"].isel(time=0).values for c in (64, 13)]
    np.testing.assert_allclose(outs[1], outs[0], atol=1e-5)
    off = cloudfree.reconstruct(cube, day, day, context_days=20, tiles=TileConfig(device="cpu", pass_through=False))
    off = off["reflectance"].isel(time=0).values
    hid = (slice(None), slice(18, 30), slice(14, 26))
    gain_on = np.median(outs[0][hid] / base[0][hid])
    gain_off = np.median(off[hid] / base[0][hid])
    assert gain_off < 1.06  # the series alone says "as usual"
    assert gain_on > gain_off + 0.08  # the date's own departure carries over (gain 0.75 of 20 %)


def test_fixed_length_batches_give_the_pixels_of_ragged_ones():
    """With ``compile`` the model gets batches of one length, the last one padded with no-data
    pixels (one compiled graph for every block): the pixels equal those of ragged batches, the
    padding never reaches the output, and the departure's neighbourhood is unchanged."""
    from cloudfree.models.pixel import CONTEXT
    from cloudfree.reconstruct.tiles import predict_pixels

    rng = np.random.default_rng(5)
    t, c, h, w, q = 7, 4, 23, 31, 16
    dn = rng.integers(1000, 4000, (t, c, h + 2 * q, w + 2 * q), dtype=np.uint16)
    dn[2, :, :6, :9] = 0
    clear = rng.random((t, h + 2 * CONTEXT, w + 2 * CONTEXT)) > 0.25
    kw = dict(dt=np.linspace(-40, 40, t).astype(np.float32), model=default_weights(), bands=["B02", "B03", "B04", "B08"],
              margin=CONTEXT, decode=(1e-4, -0.1, 0), reach=q)
    ragged = predict_pixels(dn, clear, cfg=TileConfig(device="cpu"), pixels_per_batch=1000, **kw)
    whole = predict_pixels(dn, clear, cfg=TileConfig(device="cpu"), pixels_per_batch=10**6, **kw)
    fixed = predict_pixels(dn, clear, cfg=TileConfig(device="cpu", compile=True), pixels_per_batch=1000, **kw)
    assert fixed.shape == (c, h, w) and np.isfinite(fixed).all()
    np.testing.assert_allclose(ragged, whole, atol=1e-6)
    np.testing.assert_allclose(fixed, ragged, atol=1e-6)
