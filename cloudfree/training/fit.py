"""Training from cubes or SEN12MS-CR-TS: split dates, draw examples, call :func:`cloudfree.training.trainer.train`.

Kept apart from the loop so ``train.py`` knows nothing of stores or file layouts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluate.examples import Series, make_example, series_from_cube, validation_examples
from .trainer import TrainConfig, train

__all__ = ["cube_series", "split_dates", "fit_cubes", "fit_sen12mscrts"]


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
