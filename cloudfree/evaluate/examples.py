"""Make training examples from any time series by hiding clear pixels under real cloud masks.

No cloud-free image is ever needed: pick a target date, cover part of its *clear* pixels with the
cloud mask of another date (real cloud shapes; the cloudy values of that date are pasted in, so
the input looks like a cloudy acquisition), feed the series, and score only pixels that were clear
in truth. Hidden pixels test reconstruction; visible ones keep the output faithful where the
target can be seen. Pure numpy, so it runs wherever torch does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Series", "Example", "make_example", "validation_examples", "collate", "series_from_cube", "load_mask_bank",
           "VISIBLE_WEIGHT"]

VISIBLE_WEIGHT = 0.1
"""Loss weight of visible target pixels relative to hidden ones."""


@dataclass(frozen=True)
class Series:
    """A time series of one area: what a cube holds, as numpy."""

    reflectance: np.ndarray
    """(T, C, H, W) float32, NaN where no data."""
    clear: np.ndarray
    """(T, H, W) bool, True where the observation is usable."""
    days: np.ndarray
    """(T,) float, acquisition day (days since 1970-01-01)."""


@dataclass(frozen=True)
class Example:
    """One training/evaluation example."""

    x: np.ndarray
    """(T, C, h, w) input series (hidden target pixels carry another date's cloudy values)."""
    valid: np.ndarray
    """(T, h, w) bool: usable input observations (hidden pixels are False)."""
    dt: np.ndarray
    """(T,) days from each input date to the target date."""
    target: np.ndarray
    """(C, h, w) the target date as observed (truth where ``truth_mask``)."""
    truth_mask: np.ndarray
    """(h, w) bool: target pixels that were clear in truth."""
    hidden: np.ndarray
    """(h, w) bool: truth pixels hidden from the input (the reconstruction task)."""
    target_index: int
    """Index of the target date in the source series."""
    source_index: int
    """Date whose cloud mask hid the pixels (-1: external mask bank or whole date dropped)."""

    @property
    def loss_weight(self) -> np.ndarray:
        return np.where(self.hidden, 1.0, np.where(self.truth_mask, VISIBLE_WEIGHT, 0.0)).astype(np.float32)


def series_from_cube(ds, y: slice | None = None, x: slice | None = None) -> Series:
    """Read (a window of) a cube Dataset into a :class:`Series` (computes that window only)."""
    sub = ds.isel(y=y or slice(None), x=x or slice(None))
    refl = sub["reflectance"].transpose("time", "band", "y", "x").values.astype(np.float32)
    clear = sub["clear"].transpose("time", "y", "x").values.astype(bool)
    days = sub.time.values.astype("datetime64[D]").astype(float)
    return Series(refl, clear & np.isfinite(refl).all(1), days)


def load_mask_bank(path, min_cover: float = 0.05, max_cover: float = 0.95) -> np.ndarray:
    """Real cloud masks (e.g. ``CLM.npy`` of ``../shared/data/real-clouds-slovenia``, shape (N, H, W[, 1]))
    keeping only partly cloudy ones: fully clear or overcast masks hide nothing useful."""
    clm = np.load(path)
    clm = (clm[..., 0] if clm.ndim == 4 else clm).astype(bool)
    frac = clm.reshape(len(clm), -1).mean(1)
    return clm[(frac > min_cover) & (frac < max_cover)]


def _crop(rng: np.random.Generator, h: int, w: int, size: int) -> tuple[slice, slice]:
    sy = rng.integers(0, max(h - size, 0) + 1)
    sx = rng.integers(0, max(w - size, 0) + 1)
    return slice(sy, sy + min(size, h)), slice(sx, sx + min(size, w))


def make_example(
    series: Series,
    rng: np.random.Generator,
    *,
    crop: int | None = 128,
    max_dates: int = 12,
    target: int | None = None,
    mask_bank: np.ndarray | None = None,
    drop_target_p: float = 0.2,
    min_target_clear: float = 0.4,
    augment: bool = True,
    window: tuple[slice, slice] | None = None,
    allowed_targets: np.ndarray | None = None,
) -> Example | None:
    """Draw one example; ``None`` when this crop has no usable target date.

    ``allowed_targets`` restricts the target dates (e.g. to keep validation dates out of training).
    ``mask_bank`` (N, H', W') bool of real cloud masks (e.g. the s2cloudless masks in
    ``../shared/data``) is used for half of the examples when given.
    """
    t_all, c, h, w = series.reflectance.shape
    ys, xs = window if window is not None else (_crop(rng, h, w, crop) if crop else (slice(0, h), slice(0, w)))
    refl = series.reflectance[:, :, ys, xs]
    clear = series.clear[:, ys, xs] & np.isfinite(refl).all(1)
    frac = clear.reshape(t_all, -1).mean(1)
    if target is None:
        cand = np.flatnonzero(frac >= min_target_clear)
        if allowed_targets is not None:
            cand = np.intersect1d(cand, allowed_targets)
        if len(cand) == 0:
            return None
        target = int(rng.choice(cand))
    truth = clear[target]
    source, cover = _hiding_mask(rng, clear, frac, target, mask_bank)
    drop = rng.random() < drop_target_p
    hidden = truth & (cover | drop)
    if hidden.sum() < 0.02 * truth.size and not drop:
        hidden = truth.copy()
        drop = True
    idx = _input_dates(rng, series.days, target, max_dates, augment, drop)
    if len(idx) == 0:
        return None
    x, valid = refl[idx].copy(), clear[idx].copy()
    if not drop:
        _paste(rng, x, valid, refl, idx, target, source, hidden)
    tgt = refl[target].copy()
    dt = (series.days[idx] - series.days[target]).astype(np.float32)
    if augment:
        k90, flip = int(rng.integers(4)), bool(rng.integers(2))
        gain = rng.normal(1.0, 0.04, c).astype(np.float32)[:, None, None]
        x, tgt = x * gain[None], tgt * gain

        def geo(a):
            a = np.rot90(a, k90, axes=(-2, -1))
            return np.ascontiguousarray(a[..., ::-1] if flip else a)

        x, valid, tgt, truth, hidden = geo(x), geo(valid), geo(tgt), geo(truth), geo(hidden)
    return Example(x.astype(np.float32), valid, dt, tgt.astype(np.float32), truth, hidden, target, source)


def _hiding_mask(rng: np.random.Generator, clear: np.ndarray, frac: np.ndarray, target: int,
                 mask_bank: np.ndarray | None) -> tuple[int, np.ndarray]:
    """``(source date or -1, cover (h, w))``: another date's unusable pixels, or (half the time,
    where a bank is given) a real mask from the bank resampled onto the crop."""
    t_all, ph, pw = clear.shape
    if mask_bank is not None and rng.random() < 0.5:
        m = mask_bank[rng.integers(len(mask_bank))]
        # Nearest-neighbour resample of the whole real mask onto the crop (shapes kept, size scaled).
        iy = np.linspace(0, m.shape[0] - 1, ph).round().astype(int)
        ix = np.linspace(0, m.shape[1] - 1, pw).round().astype(int)
        return -1, m[iy][:, ix].astype(bool)
    cloud_frac = 1 - frac
    cand = np.flatnonzero((cloud_frac > 0.05) & (cloud_frac < 0.95) & (np.arange(t_all) != target))
    if len(cand) == 0:
        cand = np.flatnonzero(np.arange(t_all) != target)
    source = int(rng.choice(cand)) if len(cand) else -1
    return source, (~clear[source] if source >= 0 else np.zeros((ph, pw), bool))


def _input_dates(rng: np.random.Generator, days: np.ndarray, target: int, max_dates: int, augment: bool,
                 drop: bool) -> np.ndarray:
    """The input dates, sorted: nearer dates more likely (the nearest, without augmentation), the
    target itself unless dropped."""
    others = np.array([i for i in range(len(days)) if i != target])
    k = min(len(others), max(1, int(rng.integers(2, max_dates)) if augment else max_dates - 1))
    if len(others):
        gap = np.abs(days[others] - days[target])
        p = np.exp(-gap / 60.0)
        chosen = rng.choice(others, size=k, replace=False, p=p / p.sum()) if augment else others[np.argsort(gap)[:k]]
    else:
        chosen = np.array([], int)
    return np.sort(np.concatenate([chosen, [] if drop else [target]]).astype(int))


def _paste(rng: np.random.Generator, x: np.ndarray, valid: np.ndarray, refl: np.ndarray, idx: np.ndarray,
           target: int, source: int, hidden: np.ndarray) -> None:
    """Hide the target's ``hidden`` pixels in place: the source date's real cloudy values pasted
    (an external mask: an opaque-ish synthetic cloud), and those pixels marked not valid."""
    ti = int(np.flatnonzero(idx == target)[0])
    valid[ti] &= ~hidden
    if source >= 0:
        x[ti] = np.where(hidden[None], refl[source], x[ti])
    else:
        a = rng.uniform(0.5, 1.0)
        x[ti] = np.where(hidden[None], (1 - a) * x[ti] + a * rng.uniform(0.3, 0.6), x[ti])


def validation_examples(series: Sequence[Series], targets: Sequence[Sequence[int]], seed: int = 1234,
                        max_dates: int = 12, crop: int | None = None) -> list[Example]:
    """Deterministic held-out examples: for each series, each listed target date, hidden under the
    mask of another date (no augmentation)."""
    out = []
    for s, tlist in zip(series, targets):
        for t in tlist:
            rng = np.random.default_rng(seed + 7919 * t)
            ex = make_example(s, rng, crop=crop, max_dates=max_dates, target=int(t), drop_target_p=0.0, augment=False)
            if ex is not None and ex.hidden.any():
                out.append(ex)
    return out


def collate(examples: list[Example]) -> dict[str, np.ndarray]:
    """Stack examples, padding the time axis; ``pad`` marks padded dates."""
    t_max = max(e.x.shape[0] for e in examples)
    b = len(examples)
    c, h, w = examples[0].target.shape
    x = np.zeros((b, t_max, c, h, w), np.float32)
    valid = np.zeros((b, t_max, h, w), bool)
    dt = np.zeros((b, t_max), np.float32)
    pad = np.ones((b, t_max), bool)
    for i, e in enumerate(examples):
        t = e.x.shape[0]
        x[i, :t], valid[i, :t], dt[i, :t], pad[i, :t] = np.nan_to_num(e.x), e.valid, e.dt, False
    return {"x": x, "valid": valid, "dt": dt, "pad": pad,
            "target": np.stack([np.nan_to_num(e.target) for e in examples]),
            "weight": np.stack([e.loss_weight for e in examples]),
            "hidden": np.stack([e.hidden for e in examples])}
