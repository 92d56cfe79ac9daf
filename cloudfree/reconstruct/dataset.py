"""Cube → lazy Dataset of one cloud-free image per period: the periods are made, every candidate
is validated on the cube's own held-out pixels (:mod:`.selfcheck`), and each period's image is built
from the recipe that validated best (:mod:`.images`). Builds the graph only;
:func:`cloudfree.write_outputs` writes it.
"""

from __future__ import annotations

from ..errors import InputError

from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import xarray as xr

from ..provenance import CubeProvenance, ImageProvenance
from .composites import METHODS
from .images import (FALLBACK_METHOD, departure_reach, is_pixelwise, model_composite, period_images,  # noqa: F401
                     resolve_method, usable_mask)
from .periods import make_periods
from .tiles import TileConfig

__all__ = ["reconstruct", "candidate_methods", "cube_window", "ADAPTIVE"]

ADAPTIVE = "adaptive"
"""The method of a run whose periods use different candidates or blends (chosen by validation)."""


def candidate_methods(method: str) -> list[str]:
    """What a run measures: the model (where it serves the bands) and every compositing method."""
    return (["model"] if method == "model" else []) + [m for m in METHODS]


def cube_window(cube: xr.Dataset, ys: slice, xs: slice, dates: list[int]) -> xr.Dataset:
    """A window of the cube's dates (reflectance, clear), lazily: computed where the cube lives
    (the active cluster holds a persisted cube's blocks)."""
    return cube[["reflectance", "clear"]].isel(time=dates, y=ys, x=xs)


def _adapted(method: str, reason: str, recipes: dict) -> tuple[str, str]:
    """The run's method once the recipes are known: one candidate everywhere keeps its name."""
    used = {r.describe() for r in recipes.values()}
    if not recipes or used == {method}:
        return method, reason
    if len(used) == 1 and len(next(iter(recipes.values())).weights) == 1:
        return next(iter(used)), f"{reason}; self-validation chose {next(iter(used))} in every period"
    return ADAPTIVE, f"{reason}; self-validation chose per period: " + ", ".join(
        f"{k} {r.describe()}" for k, r in recipes.items())


def _unobserved(ds: xr.Dataset, fill: bool, chunk: int) -> xr.Dataset:
    """The period images with pixels of no clear observation filled from the neighbouring periods
    (``fill``), or left NaN; either way with the ``filled`` layer."""
    from .unobserved import fill_from_neighbours

    if fill:
        return fill_from_neighbours(ds).chunk({"time": 1, "band": -1, "y": chunk, "x": chunk})
    # zeros made in the count's own tasks: a region's layers come from one task, so it is written once computed
    return ds.assign(filled=(ds["clear_count"] < 0).astype(np.uint8).assign_attrs(
        long_name="1 where filled (never: --no-fill-unobserved)"))


def reconstruct(cube: xr.Dataset, start: str | None = None, end: str | None = None, *, period: str | None = None,
                method: str = "auto", model=None, context_days: int = 30, max_dates: int = 12,
                tiles: TileConfig | None = None, chunk: int | None = None, fill_unobserved: bool = True,
                device: str | None = None, reads=None, validation=None, validations: dict | None = None,
                read_window=None, echo=None) -> xr.Dataset:
    """One cloud-free image per period from a cube, lazily (nothing is computed).

    Args:
        cube: from :func:`cloudfree.load_cube` or a cube store (``reflectance``, ``clear``).
        start, end: the dates the outputs cover (default: the cube's first and last date).
        period: ``None`` (one image), ``"month"`` or ``"ND"`` (e.g. ``"16D"``).
        method: ``auto`` (the model where it serves the cube's bands, else the median), ``model``,
            or a compositing method: median, mosaicking, least_cloudy, interpolation.
        model: checkpoint path or ``nn.Module`` (default: the shipped weights).
        context_days: dates this far outside a period may feed it.
        max_dates: at most this many dates (nearest the period centre) per image.
        tiles: patch/overlap/batch/device of the tile function; ``device`` overrides its device.
        chunk: output block in pixels (default: the cube's spatial chunk).
        fill_unobserved: pixels with no clear observation in their period's window take the value
            interpolated between the nearest periods that saw them clear, flagged in ``filled``
            (see :mod:`.unobserved`); False leaves them NaN.
        reads: block reads of the cube's items (:func:`cloudfree.cube.block_reads.block_reads`, with
            the cube's chunk): a per-pixel model then reads every block straight from the assets,
            coarse bands on their own grid, enlarged and masked on its device (a streamed run).
        validation: a :class:`~cloudfree.reconstruct.selfcheck.ValidationConfig` (default: on).
            Every period's candidates (the model where it serves the bands, and every compositing
            method) are measured on held-out clear pixels of the cube's own series; with ``auto``
            each period then uses the recipe that validated best (see :mod:`.selfcheck`), and an
            ``uncertainty`` layer calibrated on those pixels is added. The scores are in the
            ``validation`` attribute.
        validations: period label → :class:`~cloudfree.reconstruct.selfcheck.PeriodValidation`
            already measured (the run's validate stage); then nothing is measured here.
        read_window: ``(ys, xs, dates) → Dataset`` of the cube's window (lazy; computed together
            with the period's other windows), for cubes whose blocks cannot be computed (a
            streamed run's template); default: the cube's own slice.
    """
    if start is None or end is None:
        days = cube.time.values.astype("datetime64[D]")
        start = start or str(days.min())
        end = end or str(days.max())
    bands = [str(b) for b in cube.band.values]
    requested = method
    method, model, reason = resolve_method(method, bands, model)
    periods = make_periods(cube.time.values, start, end, period, context_days, max_dates)
    tiles = tiles or TileConfig()
    if device is not None:
        tiles = replace(tiles, device=device)
    chunk = chunk or int(cube.chunks["y"][0] if cube.chunks else 1024)
    if not cube.chunks:  # an in-memory cube: wrap it in Dask so the result stays lazy
        cube = cube.chunk({"time": 1, "y": chunk, "x": chunk})
    if reads is not None and reads.chunk != chunk:
        raise InputError(f"the block reads use chunk {reads.chunk}, the run {chunk}")
    from .selfcheck import ValidationConfig, validate_periods

    validation = validation if validation is not None else ValidationConfig()
    if validations is None and validation.enabled:
        validations = validate_periods(read_window or partial(cube_window, cube), (cube.sizes["y"], cube.sizes["x"]),
                                       periods, candidate_methods(method), model=model, tiles=tiles, prior=method,
                                       cfg=replace(validation, adapt=validation.adapt and requested == "auto"),
                                       echo=echo)
    validations = validations or {}
    recipes = {k: v.recipe for k, v in validations.items()}
    prior = method
    method, reason = _adapted(method, reason, recipes)
    uses_model = prior == "model" and (not recipes or any("model" in r.names for r in recipes.values()))
    ds = period_images(cube, periods, method=prior, model=model, tiles=tiles,
                chunk=chunk, reads=reads, recipes=recipes,
                uncertainty={k: v.uncertainty for k, v in validations.items() if v.uncertainty})
    ds = _unobserved(ds, fill_unobserved, chunk)
    attrs = dict(cube.attrs)
    attrs.setdefault("masked_scl_classes", cube["clear"].attrs.get("unusable_scl_classes", "[]"))
    ds.attrs.update(ImageProvenance.of_cube(
        CubeProvenance.from_attrs(attrs), method=method, method_reason=reason,
        model=(str(model) if isinstance(model, (str, Path)) else type(model).__name__) if uses_model else "",
        input_dates={p.label: [str(v)[:10] for v in cube.time.values[list(p.dates)]] for p in periods},
        validation={k: v.to_attrs() for k, v in validations.items()}).to_attrs())
    return ds
