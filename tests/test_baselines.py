import numpy as np
import pytest

from cloudfree.reconstruct.composites import interpolation, least_cloudy, median_composite, mosaicking


def series():
    # 4 dates, 1 band, 1x3 pixels; values = date index + 1 (pixel col adds 10*col)
    x = np.zeros((4, 1, 1, 3), np.float32)
    for t in range(4):
        x[t, 0, 0] = [t + 1, t + 11, t + 21]
    clear = np.zeros((4, 1, 3), bool)
    clear[2, 0, 0] = True  # pixel 0: clear only on date 2
    clear[[0, 1, 3], 0, 1] = True  # pixel 1: clear on dates 0, 1, 3
    days = np.array([0.0, 10.0, 20.0, 30.0])
    return x, clear, days


def test_pixel_clear_once_takes_that_date():
    x, clear, days = series()
    for fn in (mosaicking, median_composite, interpolation):
        assert fn(x, clear, days, 5.0)[0, 0, 0] == 3.0


def test_median_of_clear_values():
    x, clear, days = series()
    assert median_composite(x, clear, days, 0.0)[0, 0, 1] == 12.0  # median of 11, 12, 14
    assert median_composite(x, clear, days, 0.0)[0, 0, 2] == pytest.approx(22.5)  # never clear: all values


def test_mosaicking_nearest_clear_else_mean():
    x, clear, days = series()
    out = mosaicking(x, clear, days, 26.0)
    assert out[0, 0, 1] == 14.0 and out[0, 0, 2] == pytest.approx(22.5)


def test_interpolation_linear_between_clear_dates():
    x, clear, days = series()
    out = interpolation(x, clear, days, 20.0)  # pixel 1: between day 10 (12) and day 30 (14)
    assert out[0, 0, 1] == pytest.approx(13.0)
    assert interpolation(x, clear, days, 35.0)[0, 0, 1] == 14.0  # only before → that value


def test_least_cloudy_picks_date_with_most_clear_pixels():
    x, clear, days = series()
    clear[3] = True
    np.testing.assert_array_equal(least_cloudy(x, clear, days, 0.0), x[3])


def test_nan_never_counts_as_clear():
    x, clear, days = series()
    x[2, 0, 0, 0] = np.nan
    assert median_composite(x, clear, days, 0.0)[0, 0, 0] == pytest.approx(np.nanmedian(x[:, 0, 0, 0]))


def test_lazy_xarray_composite_equals_numpy():
    import dask.array as da
    import xarray as xr

    from cloudfree.reconstruct.composites import composite

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 2, 8, 8)).astype(np.float32)
    c = rng.random((5, 8, 8)) > 0.5
    times = np.array(["2024-01-01", "2024-01-11", "2024-01-21", "2024-01-31", "2024-02-10"], "datetime64[ns]")
    refl = xr.DataArray(da.from_array(x, chunks=(1, 2, 4, 4)), dims=("time", "band", "y", "x"), coords={"time": times})
    clear = xr.DataArray(da.from_array(c, chunks=(1, 4, 4)), dims=("time", "y", "x"), coords={"time": times})
    day = float(np.datetime64("2024-01-20", "D").astype(float))
    days = times.astype("datetime64[D]").astype(float)
    for m, fn in (("median", median_composite), ("interpolation", interpolation), ("mosaicking", mosaicking)):
        lazy = composite(m, refl, clear, day)
        assert lazy.chunks is not None
        np.testing.assert_allclose(lazy.values, fn(x, c, days, day), rtol=1e-6)
