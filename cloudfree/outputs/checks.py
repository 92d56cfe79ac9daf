"""Checks on finished outputs before a run reports success: nothing silently wrong.

A pixel with clear observations must have a value (NaN there means the model or a read failed);
values must be reflectances; an output where no pixel had a clear observation is an error, one
where most had none is a loud warning — each with the reason and what to do.
"""

from __future__ import annotations

from ..errors import OutputCheckError

from pathlib import Path

import dask
import xarray as xr

__all__ = ["OutputCheckError", "check_outputs", "check_files"]

VALID_RANGE = (-0.2, 6.5)
"""Reflectance a Sentinel-2 L2A output can hold (the cube's own range, with margin)."""


def check_files(periods: dict[str, dict[str, str]], digest: str) -> None:
    """Every period's COG opens with its band scale, nodata and this run's fingerprint, and its STAC
    Item and quicklook exist: what users open must carry what makes it readable."""
    import json

    import rasterio

    for label, files in periods.items():
        if "cog" in files:
            with rasterio.open(files["cog"]) as src:
                tags = src.tags()
                if src.nodata != 0 or any(abs(v - 1e-4) > 1e-12 for v in src.scales) or \
                        tags.get("cloudfree_fingerprint") != digest or not all(src.descriptions):
                    raise OutputCheckError(f"{files['cog']} lacks its band scale, nodata, descriptions or this run's "
                                           "fingerprint; delete it and re-run")
        for key in ("stac_item", "quicklook"):
            if key in files and not Path(files[key]).stat().st_size:
                raise OutputCheckError(f"{files[key]} is empty; delete it and re-run")
        if "stac_item" in files:
            item = json.loads(Path(files["stac_item"]).read_text())
            if "cloudfree:method" not in item.get("properties", {}):
                raise OutputCheckError(f"{files['stac_item']} lacks the cloudfree properties; delete it and re-run")


def check_outputs(zarr_path: str | Path, *, mostly_empty: float = 0.5) -> dict:
    """Check ``mosaic.zarr``; returns the figures (and ``warnings``), raises :class:`OutputCheckError`."""
    ds = xr.open_zarr(zarr_path)
    refl, cnt, no_clear = ds["reflectance"], ds["clear_count"], ds["no_clear"]
    observed = cnt > 0
    missing = refl.isnull().any("band")
    lo, hi = VALID_RANGE
    nan_observed, n_observed, n_pixels, out_of_range, disagree = dask.compute(
        (missing & observed).sum(), observed.sum(), observed.size, ((refl < lo) | (refl > hi)).sum(),
        ((no_clear == 1) != ~observed).sum())
    figures = {"pixels": int(n_pixels), "observed": int(n_observed), "nan_where_observed": int(nan_observed),
               "out_of_range_values": int(out_of_range), "warnings": []}
    where = f"in {zarr_path}"
    if int(disagree):
        raise OutputCheckError(f"no_clear disagrees with clear_count at {int(disagree)} pixels {where}")
    if int(n_observed) == 0:
        raise OutputCheckError(f"no pixel had a clear observation in any date of the window, so every output value "
                               f"is nodata {where}. Either every date was cloudy there (widen --start/--end or "
                               "--context-days, or check --exclude-scl / --mask) or the inputs hold no data over "
                               "the area (check the items' footprints and proj:epsg)")
    if int(nan_observed) > 0.001 * int(n_observed):
        raise OutputCheckError(f"{int(nan_observed)} of {int(n_observed)} pixels with clear observations have no "
                               f"value {where}: the model or an input read failed there (run with --method median "
                               "to tell which; check --model)")
    if int(out_of_range):
        raise OutputCheckError(f"{int(out_of_range)} output values lie outside reflectance {lo}..{hi} {where}")
    empty = 1 - int(n_observed) / int(n_pixels)
    if empty > mostly_empty:
        figures["warnings"].append(f"{empty:.0%} of the output pixels had no clear observation and are nodata; "
                                   "widen the dates or --context-days for a fuller image")
    return figures
