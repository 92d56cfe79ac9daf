"""The images of a run's periods, lazily: each period's image from one candidate (the model over
halo'd tiles, or a compositing method) or a validated recipe blending several, with its clear count
and, where validation calibrated it, its uncertainty. Builds the graph only.
"""

from __future__ import annotations

from ..errors import InputError, ModelError

import contextlib
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from ..blocks import edges as _edges, pad_constant, pad_symmetric
from .composites import METHODS, composite
from .periods import Period
from .tiles import TileConfig, compile_ahead, predict_block, predict_pixels

__all__ = ["period_images", "model_composite", "resolve_method", "usable_mask", "is_pixelwise", "departure_reach",
           "FALLBACK_METHOD", "UNCERTAINTY_BINS"]

UNCERTAINTY_BINS = (0, 1, 2, 3, 5, 9)
"""Clear-count bins (lower edges) of the uncertainty tables: the error grows as fewer clear dates
are seen, so each bin gets its own calibrated half-width."""

FALLBACK_METHOD = "median"
"""What ``method="auto"`` uses where the model does not serve the cube's bands: on real series with
real SCL mistakes the median is the most robust compositing method."""


def _decoding(dn: xr.DataArray | None) -> tuple[float, float, int] | None:
    """(scale, offset, fill) of a stored-DN array, or None."""
    if dn is None:
        return None
    return float(dn.attrs["scale"]), float(dn.attrs["offset"]), int(dn.attrs["fill"])


def usable_mask(refl: xr.DataArray, clear: xr.DataArray, dn: xr.DataArray | None = None) -> xr.DataArray:
    """Clear and with data in every band; from the stored DN where given (no float decode needed)."""
    has = (dn != _decoding(dn)[2]).all("band") if dn is not None else refl.notnull().all("band")
    return clear.astype(bool) & has


def model_composite(refl: xr.DataArray, clear: xr.DataArray, period: Period, model, tiles: TileConfig,
                    chunk: int, dn: xr.DataArray | None = None) -> xr.DataArray:
    """(band, y, x) model output for one period, lazily; refl (time, band, y, x), clear (time, y, x).

    The image is mirror-padded by one patch (the halo) and every output block of ``chunk`` pixels
    takes its halo'd window of the padded image, so any size from one pixel up runs and edges
    behave like the inside. The patch grid is global, so the result does not depend on ``chunk``.
    ``dn``: the cube's stored digital numbers; a per-pixel model then decodes them on its device.
    """
    sub_r = refl.isel(time=list(period.dates))
    sub_c = clear.isel(time=list(period.dates))
    ny, nx = refl.sizes["y"], refl.sizes["x"]
    if min(ny, nx) < 1:
        raise InputError("empty spatial extent")
    pixelwise = is_pixelwise(model)
    bands = [str(b) for b in refl.band.values]
    dt = _days_from_target(refl, period)
    nb = sub_r.sizes["band"]
    token = tokenize(str(model) if isinstance(model, (str, Path)) else id(model), tiles, period, chunk,
                     sub_r.data.name, sub_c.data.name)
    if pixelwise:
        from ..models.pixel_features import CONTEXT

        sub_dn = dn.isel(time=list(period.dates)) if dn is not None else None
        usable = usable_mask(sub_r, sub_c, sub_dn)
        h, e = 0, CONTEXT  # no halo for the network; a margin for its per-date context features
        xr_ = sub_dn.data if sub_dn is not None else sub_r.data
        q = departure_reach(model)  # the model also runs this far around a block (its date departure)
        fill = _decoding(dn)[2] if sub_dn is not None else np.nan
        xr_ = pad_constant(xr_, q, fill) if q else xr_
        cm = pad_constant(usable.data, e, True)
    else:
        h, e, q = tiles.halo, 0, 0
        xr_ = pad_symmetric(pad_symmetric(sub_r.data, 2, h), 3, h)
        cm = pad_symmetric(pad_symmetric(sub_c.data.astype(bool), 1, h), 2, h)
    from ..cluster import gpu_task_resources

    res = gpu_task_resources()
    with dask.annotate(resources=res) if res else contextlib.nullcontext():
        out = _predict_grid(xr_, cm, ny, nx, chunk, h, e, q, pixelwise, bands, dn, dt, model, tiles, nb, period, token)
    return xr.DataArray(out, dims=("band", "y", "x"), coords={"band": refl.band, "y": refl.y, "x": refl.x})


def _predict_grid(xr_, cm, ny, nx, chunk, h, e, q, pixelwise, bands, dn, dt, model, tiles, nb, period, token):
    """The model's tasks: one per output block, each on its halo'd (or margin'd) window."""
    rows = []
    for i, (y0, y1) in enumerate(_edges(ny, chunk)):
        row = []
        for j, (x0, x1) in enumerate(_edges(nx, chunk)):
            ex = xr_[:, :, y0 : y1 + 2 * (h + q), x0 : x1 + 2 * (h + q)].rechunk(-1)
            em = cm[:, y0 : y1 + 2 * (h + e), x0 : x1 + 2 * (h + e)].rechunk(-1)
            fn, extra = (predict_pixels, {"bands": bands, "margin": e, "decode": _decoding(dn), "reach": q}) \
                if pixelwise else \
                (predict_block, {"origin": (y0, x0), "bands": bands})
            row.append(da.map_blocks(fn, ex, em, dt=dt, model=model, cfg=tiles, **extra,
                                     dtype=np.float32, chunks=((nb,), (y1 - y0,), (x1 - x0,)), drop_axis=0,
                                     meta=np.empty((0, 0, 0), np.float32),
                                     name=f"cloudfree-predict-{period.label}-{i}-{j}-{token}"))
        rows.append(row)
    return da.block(rows)


def _days_from_target(refl: xr.DataArray, period: Period) -> np.ndarray:
    """Days from the period's target day to each of its dates (the model's ``dt``)."""
    days = refl.time.values[list(period.dates)].astype("datetime64[D]").astype(float)
    return (days - period.target_day).astype(np.float32)


def _from_reads(refl: xr.DataArray, period: Period, model, tiles: TileConfig, reads,
              recipe=None) -> tuple[xr.DataArray, xr.DataArray]:
    """(image, clear count) of one period from block reads: both come out of one task per block,
    which runs the recipe's candidates (default: the model) on the model's device."""
    from ..models.pixel_features import CONTEXT
    from .model_reads import model_from_reads

    uses_model = recipe is None or "model" in recipe.names
    margin, reach = (CONTEXT, departure_reach(model)) if uses_model else (0, 0)  # composites need no context
    arr = model_from_reads(reads, period, model, tiles, dt=_days_from_target(refl, period), margin=margin,
                         reach=reach, recipe=recipe.weights if recipe is not None else None,
                         least_cloudy_date=recipe.least_cloudy_date if recipe is not None else None)
    nb = refl.sizes["band"]
    coords = {"y": refl.y, "x": refl.x}
    img = xr.DataArray(arr[:nb], dims=("band", "y", "x"), coords={"band": refl.band, **coords})
    return img, xr.DataArray(arr[nb].astype(np.uint16), dims=("y", "x"), coords=coords)


def is_pixelwise(model) -> bool:
    """The registry's answer (:func:`cloudfree.models.traits.is_pixelwise`), imported when asked."""
    from ..models.traits import is_pixelwise as pixelwise

    return pixelwise(model)


def departure_reach(model) -> int:
    """The registry's answer (:func:`cloudfree.models.traits.departure_reach`), imported when asked."""
    from ..models.traits import departure_reach as reach

    return reach(model)


def resolve_method(method: str, bands: list[str], model=None, *, warn: bool = True) -> tuple[str, object, str]:
    """``(method, model, reason)``: check ``method`` and, for the model, that it serves ``bands``
    — before any Dask work. ``auto`` is the model where it serves the bands, else the median."""
    if method not in ("auto", "model", *METHODS):
        raise InputError(f"unknown method {method!r}; choose auto, model, {', '.join(METHODS)}")
    if method not in ("auto", "model"):
        return method, None, f"{method} requested"
    if model is None:
        from ..models import default_weights

        model = default_weights()
    from ..models.checkpoint import serves
    from ..models.traits import model_traits

    traits = model_traits(model)
    config, name = traits.config, traits.name
    if config is None:
        ok = True
    elif config.get("bands", [""])[0].endswith(" bands"):
        ok = config["bands"] == [f"{len(bands)} bands"]
    else:
        ok = serves(config, bands)
    if ok:
        return "model", model, f"model {name} serves bands {', '.join(bands)}"
    what = ("any subset of " if config.get("band_aware") else "the band set ") + ", ".join(config["bands"])
    msg = f"the model {name} serves {what} only; the cube has {', '.join(bands)}"
    if method == "model":
        raise ModelError(msg + ". Load those bands (--bands), pass a checkpoint trained on these bands (--model), "
                               "or choose a compositing method (--method median).")
    reason = msg + f": --method auto fell back to '{FALLBACK_METHOD}'"
    if warn:
        warnings.warn(reason, stacklevel=3)
    return FALLBACK_METHOD, None, reason


def period_images(cube: xr.Dataset, periods: list[Period], *, method: str = "model", model=None,
           tiles: TileConfig = TileConfig(), chunk: int = 1024, keep_guess: bool = False,
           model_path=None, reads=None, recipes: dict | None = None,
           uncertainty: dict[str, list[float]] | None = None) -> xr.Dataset:
    """The output Dataset (lazy): ``reflectance(time, band, y, x)``, ``clear_count(time, y, x)``,
    ``no_clear(time, y, x)``; ``time`` is each period's centre, with ``period``, ``period_start``
    and ``period_end`` coordinates.

    ``recipes``: period label → :class:`~cloudfree.reconstruct.selfcheck.Recipe` (the candidates
    and their weights, from the run's self-validation); other periods use ``method``.
    ``uncertainty``: period label → the calibrated error per clear-count bin
    (:data:`UNCERTAINTY_BINS`); adds ``uncertainty(time, y, x)``. Pixels with no clear observation
    are NaN (``keep_guess``: the candidate's own value, e.g. a spatial model's guess, as the
    validation scores it)."""
    model = model if model is not None else model_path
    refl, clear = cube["reflectance"], cube["clear"]
    dn = cube["dn"] if "dn" in cube else None
    imgs, counts = [], []
    uses_model = method == "model" or any("model" in r.names for r in (recipes or {}).values())
    if uses_model and model is None:
        raise InputError("method 'model' needs a checkpoint path or an nn.Module")
    from_reads = reads is not None and (model is None or is_pixelwise(model))  # every candidate from block reads
    if uses_model and tiles.compile and is_pixelwise(model) and any(len(p.dates) for p in periods):
        from ..cluster import run_on_model_processes

        # compiled for the run's inputs before the first read (where it runs on a GPU, see TileConfig)
        run_on_model_processes(compile_ahead, model, tiles, [len(p.dates) for p in periods if len(p.dates)],
                               [str(b) for b in refl.band.values])
    recipes = recipes or {}
    for p in periods:
        recipe = recipes.get(p.label)
        n = None
        if from_reads:  # one task per block makes every candidate and counts the clear observations
            if recipe is None and method != "model":
                from .selfcheck import Recipe

                recipe = Recipe.single(method)
            img, n = _from_reads(refl, p, model, tiles, reads, recipe)
        elif recipe is None:
            img = _candidate(method, refl, clear, p, model, tiles, chunk, dn)
        else:
            img = sum(w * _candidate(name, refl, clear, p, model, tiles, chunk, dn, recipe.least_cloudy_date)
                      for name, w in recipe.weights) if len(recipe.weights) > 1 else \
                _candidate(recipe.names[0], refl, clear, p, model, tiles, chunk, dn, recipe.least_cloudy_date)
        if n is None:
            sel = list(p.dates)
            usable = usable_mask(refl.isel(time=sel), clear.isel(time=sel), dn.isel(time=sel) if dn is not None else None)
            n = usable.sum("time").astype(np.uint16)
        if not keep_guess:
            img = img.where(n > 0)  # never invent a value where nothing clear was seen
        imgs.append(img)
        counts.append(n)
    times = np.array([np.datetime64(int(round(p.target_day)), "D") for p in periods]).astype("datetime64[ns]")
    tcoord = xr.DataArray(times, dims="time", name="time")
    out_refl = xr.concat(imgs, dim=tcoord).astype(np.float32)
    cnt = xr.concat(counts, dim=tcoord)
    ds = xr.Dataset({
        "reflectance": out_refl.assign_attrs(units="1", long_name="cloud-free surface reflectance"),
        "clear_count": cnt.assign_attrs(long_name="number of clear observations used"),
        "no_clear": (cnt == 0).astype(np.uint8).assign_attrs(long_name="1 where no clear observation existed"),
    })
    if uncertainty:
        ds["uncertainty"] = _uncertainty_layer(cnt, [uncertainty.get(p.label) for p in periods])
    ds = ds.assign_coords(period=("time", np.array([p.label for p in periods], dtype=str)),
                          period_start=("time", np.array([p.start for p in periods]).astype("datetime64[ns]")),
                          period_end=("time", np.array([p.end for p in periods]).astype("datetime64[ns]")))
    if "spatial_ref" in cube.coords:
        ds = ds.assign_coords(spatial_ref=cube.spatial_ref)
    return ds.chunk({"time": 1, "band": -1, "y": chunk, "x": chunk})


def _candidate(name: str, refl, clear, p: Period, model, tiles: TileConfig, chunk: int, dn, date: int | None = None):
    """One candidate's (band, y, x) image of period ``p``, lazily: the model or a compositing method."""
    if name == "model":
        return model_composite(refl, clear, p, model, tiles, chunk, dn=dn)
    sel = list(p.dates)
    return composite(name, refl.isel(time=sel), clear.isel(time=sel), p.target_day, date=date)


def _uncertainty_layer(count: xr.DataArray, tables: list[list[float] | None]) -> xr.DataArray:
    """Expected absolute error (reflectance, band mean; the 68 % interval's half-width) per pixel:
    each period's table, calibrated on its held-out pixels, looked up by the pixel's clear count."""
    edges = np.asarray(UNCERTAINTY_BINS)
    layers = []
    for t, table in enumerate(tables):
        c = count.isel(time=t)
        if table is None:
            layers.append(xr.full_like(c, np.nan, dtype=np.float32))
            continue
        lut = np.asarray(table, np.float32)
        layers.append(xr.apply_ufunc(lambda v: lut[np.searchsorted(edges, v, side="right") - 1], c, dask="parallelized",
                                     output_dtypes=[np.float32]))
    out = xr.concat(layers, dim=count.time)
    return out.assign_attrs(units="1", long_name="expected absolute error of the reflectance (band mean, 68 % "
                                                 "interval half-width), calibrated on the run's held-out pixels")

