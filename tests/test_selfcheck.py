"""Self-validation: every run measures its candidates on its own series and adapts per period.

Real data throughout: the Sentinel-2 L2A series bundled with the package (no ../shared needed).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

import cloudfree
from cloudfree.catalog import bundled_catalog
from cloudfree.models import default_weights
from cloudfree.reconstruct.composites import METHODS
from cloudfree.reconstruct.periods import make_periods
from cloudfree.reconstruct.selfcheck import (Recipe, ValidationConfig, _fit, sample_windows, validate_period)

CANDIDATES = ["model", *METHODS]


@pytest.fixture(scope="module")
def bundled_cube():
    items = cloudfree.search(bundled_catalog(), "2019-06-01", "2019-10-31")
    return cloudfree.load_cube(items, None).compute()


def _period_window(cube, start="2019-08-01", end="2019-08-31"):
    p = make_periods(cube.time.values, start, end, None, 20, 12)[0]
    return p, cube[["reflectance", "clear"]].isel(time=list(p.dates))


def test_windows_cover_small_areas_whole_and_spread_over_large_ones():
    assert sample_windows(64, 64, 384, 4) == [(slice(0, 64), slice(0, 64))]
    wins = sample_windows(4000, 3000, 384, 4)
    assert len(wins) == 4 and all(ys.stop - ys.start == 384 and xs.stop - xs.start == 384 for ys, xs in wins)
    assert len({(ys.start, xs.start) for ys, xs in wins}) == 4
    assert all(0 <= ys.start and ys.stop <= 4000 and 0 <= xs.start and xs.stop <= 3000 for ys, xs in wins)


def test_the_recipe_never_loses_to_the_prior_on_the_pixels_it_was_not_fitted_on(bundled_cube):
    """On a real series: every candidate is scored on held-out clear pixels of the period's own
    target date, and a recipe other than the prior holds only where it also wins on the half of
    the examples it was not fitted on."""
    p, win = _period_window(bundled_cube)
    v = validate_period([win], p.label, p.target_day, CANDIDATES, model=str(default_weights()), prior="model")
    assert not v.thin and v.n_examples >= 2 and v.n_pixels >= ValidationConfig().min_pixels
    assert set(v.scores) == set(CANDIDATES) | {"chosen"} and set(v.holdout) == set(v.scores)
    for s in v.scores.values():
        assert np.isfinite(s["psnr"]) and 0 < s["mae"] < 0.5 and len(s["mae_per_band"]) == win.sizes["band"]
    assert set(v.recipe.names) <= set(CANDIDATES) and abs(sum(w for _, w in v.recipe.weights) - 1) < 1e-9
    assert v.holdout["chosen"]["psnr"] >= v.holdout["model"]["psnr"] - 1e-9
    # the targets are the period's own dates nearest its centre
    days = [str(d)[:10] for d in win.time.values]
    assert v.targets and set(v.targets) <= set(days)
    assert len(v.uncertainty) == 6 and all(u > 0 for u in v.uncertainty)


def test_a_candidate_that_is_right_on_held_out_pixels_is_chosen_and_a_noisy_one_is_not():
    """The adapt rule on real truths: a perfect candidate is taken; one that is better on one half
    only, or better on both by less than CLEAR_WIN_DB, never replaces the prior."""
    rng = np.random.default_rng(3)
    truths = [rng.uniform(0.02, 0.4, (4, 200)) for _ in range(6)]
    prior = [t + rng.normal(0, 0.03, t.shape) for t in truths]
    perfect = [{"model": p, "median": t} for p, t in zip(prior, truths)]
    recipe, _, why = _fit(["model", "median"], perfect, truths, "model")
    assert recipe == Recipe.single("median"), why
    # 'median' is exact on the fitting half (even examples) and far off on the other half
    lucky = [{"model": p, "median": t if i % 2 == 0 else t + 0.2} for i, (p, t) in enumerate(zip(prior, truths))]
    recipe, held, why = _fit(["model", "median"], lucky, truths, "model")
    assert recipe == Recipe.single("model") and held == [1, 3, 5] and "kept" in why
    # better on both halves, but within the validation's noise (about 1 dB): the prior stays
    slight = [{"model": p, "median": t + 0.9 * (p - t)} for p, t in zip(prior, truths)]
    recipe, _, why = _fit(["model", "median"], slight, truths, "model")
    assert recipe == Recipe.single("model") and "less than the" in why, why


def test_validation_is_too_thin_on_a_window_without_clear_pixels(bundled_cube):
    p, win = _period_window(bundled_cube)
    win = win.copy(deep=True)
    win["clear"][:] = 0
    v = validate_period([win], p.label, p.target_day, CANDIDATES, model=str(default_weights()), prior="model")
    assert v.thin and v.recipe == Recipe.single("model") and v.n_pixels == 0 and "too thin" in v.reason


@pytest.mark.slow
def test_a_run_reports_its_validation_and_writes_what_it_chose(tmp_path):
    """``cloudfree.run`` on the bundled real series: run.json, the Zarr attributes, the STAC Items
    and the COG tags carry the validation; the written image is exactly what the chosen recipe
    makes (a run with that one method, no validation); the uncertainty layer reads back."""
    out = tmp_path / "run"
    man = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", out, period="month", context_days=20,
                        stream=False, device="cpu", memory_limit="4GB")
    assert set(man["validation"]) == {"2019-08", "2019-09"}
    ds = xr.open_zarr(out / "mosaic.zarr", decode_coords="all")
    attrs = json.loads(ds.attrs["validation"])
    for label, v in man["validation"].items():
        assert attrs[label]["recipe"] == v["recipe"] and v["n_pixels"] >= ValidationConfig().min_pixels
        assert set(v["scores"]) == set(CANDIDATES) | {"chosen"}
        item = json.loads((out / f"cloudfree_{label}.stac.json").read_text())
        assert item["properties"]["cloudfree:validation_recipe"] == v["recipe"]
        assert item["properties"]["cloudfree:validation_psnr"] == pytest.approx(v["scores"]["chosen"]["psnr"])
    unc = ds["uncertainty"].values
    refl = ds["reflectance"].values
    assert np.isfinite(unc[np.isfinite(refl).all(1)]).all() and (unc[np.isfinite(unc)] > 0).all()
    # what was written is what validation chose: the same image from the chosen method alone
    for t, label in enumerate(str(v) for v in ds.period.values):
        recipe = man["validation"][label]["recipe"]
        if len(recipe) != 1:
            continue
        (name,) = recipe
        one = cloudfree.run(bundled_catalog(), label + "-01", "2019-08-31" if label == "2019-08" else "2019-09-30",
                            tmp_path / f"alone-{label}", period="month", context_days=20, stream=False, device="cpu",
                            memory_limit="4GB", method=name, validate=False)
        assert one["validation"] == {}
        alone = xr.open_zarr(tmp_path / f"alone-{label}" / "mosaic.zarr")
        assert "uncertainty" not in alone
        np.testing.assert_array_equal(alone["reflectance"].isel(time=0).values, refl[t])
    cog = rioxarray.open_rasterio(out / "cloudfree_2019-08.tif", mask_and_scale=True)
    assert np.allclose(cog.values, refl[0], atol=1e-4, equal_nan=True)
    side = rioxarray.open_rasterio(out / "cloudfree_2019-08_uncertainty.tif", mask_and_scale=True)
    assert side.rio.crs == cog.rio.crs and side.shape == (1, *unc.shape[1:])
    np.testing.assert_allclose(side.values[0], unc[0], atol=6e-5)
    item = json.loads((out / "cloudfree_2019-08.stac.json").read_text())
    assert item["assets"]["uncertainty"]["href"] == "cloudfree_2019-08_uncertainty.tif"


def _saturate(catalog_dir, item: str, band: str, rows: slice, cols: slice, dn: int = 15000):
    import rasterio

    path = next(catalog_dir.rglob(f"{item}/{band}.tif"))
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    data[:, rows, cols] = dn
    profile.update(driver="GTiff")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def test_reflectance_above_one_is_never_a_clear_observation_whatever_scl_says(tmp_path):
    """A bright value (reflectance 1.5 under SCL 'vegetation') is unusable in the cube and in the
    streamed run's own mask: both count the same clear observations."""
    import shutil
    from pathlib import Path

    src = Path(bundled_catalog()).parent
    cat = tmp_path / "catalog"
    shutil.copytree(src, cat)
    item = "worldcereal_0000280849BAC91C_20190824T105657"
    _saturate(cat, item, "B04", slice(10, 20), slice(30, 40))
    found = cloudfree.search(str(cat / "collection.json"), "2019-08-24", "2019-08-24")
    cube = cloudfree.load_cube(found, None).compute()
    assert float(cube["reflectance"].sel(band="B04").values[0, 15, 35]) == pytest.approx(1.5)
    assert (cube["scl"].values[0, 10:20, 30:40] != 3).any()
    assert (cube["clear"].values[0, 10:20, 30:40] == 0).all() and cube["clear"].values[0, :10].any()
    counts = {}
    for stream in (True, False):
        out = tmp_path / f"run-{stream}"
        cloudfree.run(str(cat / "collection.json"), "2019-08-01", "2019-08-31", out, context_days=10, stream=stream,
                      device="cpu", memory_limit="4GB", validate=False)
        counts[stream] = xr.open_zarr(out / "mosaic.zarr")["clear_count"].values
    np.testing.assert_array_equal(counts[True], counts[False])
    plain = cloudfree.load_cube(cloudfree.search(bundled_catalog(), "2019-07-22", "2019-09-10"), None)
    assert counts[True][0, 15, 35] < int(plain["clear"].values[:, 15, 35].sum())


def test_validation_scores_the_candidates_as_the_run_computes_them(bundled_cube):
    """The compositing candidates at the hidden pixels equal what the run's own lazy path
    (:func:`cloudfree.reconstruct.images.period_images`) makes of the same example window."""
    import dask

    from cloudfree.reconstruct.images import period_images
    from cloudfree.reconstruct.periods import Period
    from cloudfree.reconstruct.selfcheck import _candidates_on, _examples
    from cloudfree.reconstruct.tiles import TileConfig

    p, win = _period_window(bundled_cube)
    days = win.time.values.astype("datetime64[D]").astype(float)
    x, c = win["reflectance"].values, win["clear"].values.astype(bool)
    t = int(np.argmin(np.abs(days - p.target_day)))
    ex = _examples(x, c, days, t, ValidationConfig(), np.random.default_rng(0))[0]
    got = _candidates_on(ex, days, [str(b) for b in win.band.values], CANDIDATES, str(default_weights()), TileConfig())
    cube = xr.Dataset({"reflectance": (("time", "band", "y", "x"), ex.x), "clear": (("time", "y", "x"), ex.clear.astype(np.uint8))},
                      coords={"time": win.time.values, "band": win.band.values}).chunk({"time": 1, "y": -1, "x": -1})
    q = Period("v", np.datetime64(int(days[t]), "D"), np.datetime64(int(days[t]), "D"), float(days[t]), tuple(range(len(days))))
    for name in METHODS:
        with dask.config.set(scheduler="sync"):
            ref = period_images(cube, [q], method=name, chunk=64, keep_guess=True)["reflectance"].isel(time=0).values
        np.testing.assert_allclose(got[name], ref[:, ex.hidden], rtol=1e-6, atol=1e-7, err_msg=name)
    assert got["model"].shape == got["median"].shape and np.isfinite(got["model"]).all()


@pytest.mark.parametrize("recipe", [Recipe((("median", 1.0),)), Recipe((("model", 0.5), ("interpolation", 0.5))),
                                    Recipe((("mosaicking", 0.75), ("least_cloudy", 0.25)), 3)])
def test_block_reads_make_any_recipe_as_the_stored_cube_does(recipe):
    """A recipe chosen by validation runs inside the block-read tasks (compositing on the model's
    device) and gives the picture of the cube path: the same clear counts, NaN where it has NaN,
    and values within the coarse bands' warp rounding."""
    import dask

    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.block_reads import block_reads
    from cloudfree.reconstruct.selfcheck import PeriodValidation

    items = cloudfree.search(bundled_catalog(), "2019-07-01", "2019-10-31")
    spec = CubeSpec(chunk=24, bands=("B02", "B03", "B04", "B05", "B08", "B11")).resolved(items)
    cube = cloudfree.load_cube(items, None, spec)
    src = block_reads(items, None, spec, times=cube.time.values)
    label = "2019-08-01_2019-08-31"
    outs = []
    for source in (src, None):
        ds = cloudfree.reconstruct(cube, "2019-08-01", "2019-08-31", model=str(default_weights()), context_days=20,
                                   chunk=24, reads=source, device="cpu",
                                   validations={label: PeriodValidation(label, recipe, "given")})
        with dask.config.set(scheduler="threads"):
            outs.append(ds.compute())
    a, b = outs
    np.testing.assert_array_equal(a["clear_count"].values, b["clear_count"].values)
    x, y = a["reflectance"].values, b["reflectance"].values
    np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
    assert np.isfinite(x).mean() > 0.9 and a.attrs["method"] == b.attrs["method"]
    assert np.nanmean(np.abs(x - y)) < 2e-5 and np.nanmax(np.abs(x - y)) < 5e-3  # GDAL rounds coarse bands to DN


def test_the_compositing_methods_on_the_device_equal_the_numpy_ones():
    import torch

    from cloudfree.reconstruct.composites import composite_on_device

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.5, (9, 4, 30, 31)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    clear = rng.random((9, 30, 31)) < 0.4
    clear[:, :3, :3] = False  # never clear: each method's fallback
    days = np.sort(rng.choice(60, 9, replace=False)).astype(float)
    for name, fn in METHODS.items():
        ref = fn(x, clear, days, 30.0)
        got = composite_on_device(name, torch.from_numpy(x), torch.from_numpy(clear), (days - 30).astype(np.float32))
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-7, equal_nan=True, err_msg=name)


def test_the_model_on_a_cut_window_gives_the_whole_windows_values_at_hidden_pixels(bundled_cube):
    """Validation runs the per-pixel model on the hidden pixels' neighbourhood only: exactly the
    values a whole-window run gives there."""
    from cloudfree.reconstruct.selfcheck import _Example, _examples, _model_at_hidden, _model_on
    from cloudfree.reconstruct.tiles import TileConfig

    p, win = _period_window(bundled_cube)
    days = win.time.values.astype("datetime64[D]").astype(float)
    # the real window mirrored to 192 px: a footprint's neighbourhood is then a part of it
    x = np.pad(win["reflectance"].values, ((0, 0), (0, 0), (64, 64), (64, 64)), mode="reflect")
    c = np.pad(win["clear"].values.astype(bool), ((0, 0), (64, 64), (64, 64)), mode="reflect")
    t = int(np.argmin(np.abs(days - p.target_day)))
    bands = [str(b) for b in win.band.values]
    ex = _examples(x, c, days, t, ValidationConfig(), np.random.default_rng(1))[0]  # its shape
    y0, x0 = max(((a, b) for a in range(0, 180, 6) for b in range(0, 172, 6)),
                 key=lambda p: c[t, p[0]:p[0] + 12, p[1]:p[1] + 20].sum())
    hidden = np.zeros_like(ex.hidden)
    hidden[y0:y0 + 12, x0:x0 + 20] = c[t, y0:y0 + 12, x0:x0 + 20]  # a compact footprint on clear pixels
    small = _Example(x, c, t, hidden, x[t - 1], np.zeros_like(hidden))  # another date's values, flagged
    assert small.hidden.sum() > 50
    cut = _model_at_hidden(small, days, bands, str(default_weights()), TileConfig())
    whole = _model_on(small, days, bands, str(default_weights()), TileConfig())[:, small.hidden]
    np.testing.assert_allclose(cut, whole, rtol=1e-6, atol=1e-6)
