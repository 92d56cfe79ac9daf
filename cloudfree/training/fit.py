"""Training any registered model from its data: cube stores or SEN12MS-CR-TS for the image models,
the real series of a static catalog for the per-pixel ones; every one through the one loop
(:mod:`cloudfree.training.loop`). Kept apart from the loop, which knows nothing of stores or layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..evaluate.examples import Series, make_example, series_from_cube, validation_examples
from .trainer import TrainConfig, train

__all__ = ["cube_series", "split_dates", "fit_cubes", "fit_sen12mscrts", "fit_series", "TrainData", "train_model"]


def cube_series(path: str | Path, window: int = 1024, bands: tuple[str, ...] | None = None) -> list[Series]:
    """A cube store (``bands`` of it) as spatial windows of at most ``window`` px (bounded memory per window)."""
    from ..cube.load import open_cube

    ds = open_cube(path)
    if bands:
        ds = ds.sel(band=list(bands))
    out = []
    for y0 in range(0, ds.sizes["y"], window):
        for x0 in range(0, ds.sizes["x"], window):
            out.append(series_from_cube(ds, slice(y0, y0 + window), slice(x0, x0 + window)))
    return out


def split_dates(series: Series, every: int = 5, min_clear: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """(train targets, validation targets): every ``every``-th sufficiently clear date is held out."""
    frac = series.clear.reshape(len(series.days), -1).mean(1)
    clear = np.flatnonzero(frac >= min_clear)
    val = clear[every // 2 :: every]
    return np.setdiff1d(np.arange(len(series.days)), val), val


def fit_cubes(cubes: list[str | Path], out: str | Path, cfg: TrainConfig, *, device: str | None = None,
              mask_bank: np.ndarray | None = None, log=print) -> dict:
    """Train on one or more cube stores; validation = held-out dates of the same cubes."""
    series = [s for c in cubes for s in cube_series(c)]
    splits = [split_dates(s) for s in series]
    val = validation_examples(series, [v for _, v in splits], max_dates=cfg.max_dates, crop=min(cfg.crop * 2, 512))

    def sample(rng):
        i = int(rng.integers(len(series)))
        return make_example(series[i], rng, crop=cfg.crop, max_dates=cfg.max_dates, mask_bank=mask_bank,
                            allowed_targets=splits[i][0])

    log(f"training on {len(series)} windows from {len(cubes)} cube(s); {len(val)} validation examples")
    return train(cfg, sample, out, val=val, device=device, log=log)


def fit_sen12mscrts(root: str | Path, out: str | Path, cfg: TrainConfig, *, device: str | None = None,
                    max_patches: int | None = None, log=print) -> dict:
    """Train on the SEN12MS-CR-TS train split; validate on test-split patches (least-cloudy target)."""
    from ..evaluate.sen12mscrts import find_patches, least_cloudy_example, read_patch

    train_p = find_patches(root, "train")[:max_patches]
    test_p = find_patches(root, "test")[: max(1, (max_patches or 64) // 8)]
    series = [read_patch(p) for p in train_p]
    val = [least_cloudy_example(read_patch(p), n_inputs=cfg.max_dates - 1) for p in test_p]

    def sample(rng):
        return make_example(series[int(rng.integers(len(series)))], rng, crop=cfg.crop, max_dates=cfg.max_dates)

    log(f"SEN12MS-CR-TS: {len(series)} training patches, {len(val)} validation patches")
    return train(cfg, sample, out, val=val, device=device, log=log)


@dataclass(frozen=True)
class TrainData:
    """Where the examples come from (one of them, as the architecture needs)."""

    cubes: tuple[Path, ...] = ()
    """Cube stores (``cloudfree cube``): the image models."""
    sen12mscrts: Path | None = None
    """A SEN12MS-CR-TS root in its published layout: the image models."""
    catalog: str | None = None
    """A static STAC catalog whose collections are whole series: the per-pixel models."""
    collections: tuple[str, ...] = ()
    """The catalog's collections to train on (default: all of them)."""
    mask_bank: Path | None = None
    """``CLM.npy`` of real cloud masks to hide pixels with (image models)."""


def fit_series(arch: str, data: TrainData, out: str | Path, *, steps: int, lr: float | None = None, seed: int = 0,
               minutes: float | None = None, init: str | Path | None = None, device: str = "cpu", log=print) -> dict:
    """Train a per-pixel model (``pixel_timegate``, ``pixel_terramind`` over the ``init`` per-pixel
    checkpoint) on the real series of a static catalog; every third clear target date of each series
    is held out for validation (checkpoint selection)."""
    from .pixel import PixelTrainConfig, load_real_series, train_pixel
    from .terramind import TerraMindTrainConfig, train_terramind

    if data.catalog is None:
        raise InputError(f"{arch} trains on the real series of a static catalog: give --catalog")
    collections = list(data.collections) or sorted({i.collection_id for i in _items(data.catalog) if i.collection_id})
    series = load_real_series(data.catalog, collections)
    held = {s.name: set(s.targets[1::3]) for s in series}
    keep = {"train_filter": lambda s, t: t not in held[s.name], "val_filter": lambda s, t: t in held[s.name]}
    if arch == "pixel_timegate":
        cfg = PixelTrainConfig(steps=steps, seed=seed, max_minutes=minutes, **({"lr": lr} if lr else {}))
        return train_pixel(series, series, out, cfg, device=device, log=log, **keep)
    from ..models import default_weights

    cfg = TerraMindTrainConfig(steps=steps, seed=seed, max_minutes=minutes, **({"lr": lr} if lr else {}))
    return train_terramind(series, series, init or default_weights(), out, cfg, device=device, log=log, **keep)


def _items(catalog: str):
    from ..catalog.locations import read_static_items

    return read_static_items(catalog)


def train_model(arch: str, data: TrainData, out: str | Path, cfg: TrainConfig, *, lr: float | None = None,
                minutes: float | None = None, init: str | Path | None = None, device: str | None = None,
                log=print) -> dict:
    """Train any registered architecture on the data it needs (see :class:`TrainData`), resuming
    an interrupted run in ``out``; the default model is ``pixel_timegate``. ``lr`` (default: each
    architecture's own) and ``minutes`` (a wall-time budget) apply to every architecture."""
    from ..extras import TRAIN_EXTRA, require_torch
    from ..models import model_kind

    require_torch("training", TRAIN_EXTRA)
    from .loop import pick_device

    kind = model_kind(arch)
    if kind.pixelwise or arch == "pixel_terramind":
        return fit_series(arch, data, out, steps=cfg.steps, lr=lr, seed=cfg.seed, minutes=minutes, init=init,
                          device=str(pick_device(device)), log=log)
    cfg = replace(cfg, lr=lr or cfg.lr, time_limit_s=minutes * 60 if minutes else cfg.time_limit_s)
    if bool(data.cubes) == bool(data.sen12mscrts):
        raise InputError(f"{arch} trains on image examples: give --cube (one or more) or --sen12mscrts")
    if data.cubes:
        from ..evaluate.examples import load_mask_bank

        bank = load_mask_bank(data.mask_bank) if data.mask_bank else None
        return fit_cubes(list(data.cubes), out, cfg, device=device, mask_bank=bank, log=log)
    return fit_sen12mscrts(data.sen12mscrts, out, cfg, device=device, log=log)
