"""Self-validation: every run measures its candidates on its own series and adapts per period.

A series carries its own truth: clear pixels of a date can be hidden under real clouds and
reconstructed from the rest. For each output period this stage

1. **holds out** examples from the period's own dates: the date nearest the period's target day
   (the image the output stands for) keeps its cloudy part and has some of its truly clear pixels
   hidden under real cloud + shadow footprints (other dates' in the window, and flipped copies of
   its own), with the real values and mask of that footprint pasted in, as
   ``benchmarks/real_quality.py`` does offline. Nothing is scored where the truth is unknown;
2. **measures every candidate** (the model and each compositing method) on them through the same
   code as the outputs (:func:`cloudfree.reconstruct.images.period_images` on the window);
3. **adapts**: fits a recipe (one candidate, or a weighted blend of two) on one half of the
   examples and keeps it only where it beats the best single candidate on the other half;
4. **reports** the held-out scores and the recipe (:class:`PeriodValidation`), and calibrates an
   uncertainty per pixel (the 68th percentile of the absolute error on hidden pixels, by the
   number of clear observations a pixel has).

Why the target's own visible part: examples built on *other* dates rank the methods poorly, since
least-cloudy, interpolation and mosaicking draw on different dates for another target.
"""

from __future__ import annotations

import json
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Callable

import dask
import numpy as np
import xarray as xr

from ..bands import dilate_cross
from .images import UNCERTAINTY_BINS
from .validation import ValidationConfig

__all__ = ["ValidationConfig", "Recipe", "PeriodValidation", "validate_period", "validate_periods", "sample_windows",
           "UNCERTAINTY_BINS"]

WIDEN_BELOW = 8
"""Validation takes the next nearest dates as targets too while the nearest has fewer clear
pixels than this many times ``min_pixels``."""


@dataclass(frozen=True)
class Recipe:
    """What a period's image is made of: candidate → weight (the weights sum to 1)."""

    weights: tuple[tuple[str, float], ...]
    least_cloudy_date: int | None = None
    """For a recipe with ``least_cloudy``: the period's date (an index into its dates) with the
    most usable pixels over the validation windows, so block reads and a stored cube agree."""

    @classmethod
    def single(cls, name: str) -> "Recipe":
        return cls(((name, 1.0),))

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.weights]

    def describe(self) -> str:
        if len(self.weights) == 1:
            return self.weights[0][0]
        return " + ".join(f"{w:.2f} {n}" for n, w in self.weights)

    def apply(self, preds: dict[str, np.ndarray]) -> np.ndarray:
        return sum(w * preds[n] for n, w in self.weights)


@dataclass
class PeriodValidation:
    """One period's validation: the recipe chosen and the held-out scores behind it."""

    period: str
    recipe: Recipe
    reason: str
    n_examples: int = 0
    n_pixels: int = 0
    targets: list[str] = field(default_factory=list)
    """Dates whose visible part was hidden and reconstructed."""
    scores: dict[str, dict] = field(default_factory=dict)
    """Candidate (and ``chosen``) → PSNR, MAE, MAE per band, n pixels, on all held-out pixels."""
    holdout: dict[str, dict] = field(default_factory=dict)
    """The same on the half the recipe was not fitted on."""
    uncertainty: list[float] = field(default_factory=list)
    """68th percentile of the absolute error (band mean) per bin of :data:`UNCERTAINTY_BINS`."""
    thin: bool = False
    outside: float | None = None
    """Share of the sampled pixels with data that have no clear observation inside the period:
    their values can only come from dates before or after it (the context days)."""

    def to_attrs(self) -> dict:
        d = asdict(self)
        d["recipe"] = {n: w for n, w in self.recipe.weights}
        d["recipe_text"] = self.recipe.describe()
        d["least_cloudy_date"] = self.recipe.least_cloudy_date
        return json.loads(json.dumps(d, default=float))

    def summary(self) -> str:
        """One line for the console."""
        if self.thin or "chosen" not in self.scores:
            return f"{self.period}: {self.recipe.describe()} ({self.reason})"
        ch = self.scores["chosen"]
        comp = {k: v for k, v in self.scores.items() if k not in ("chosen", "model")}
        best = max(comp, key=lambda k: comp[k]["psnr"]) if comp else None
        vs = f"; best compositing {best} {comp[best]['psnr']:.1f} dB" if best else ""
        return (f"{self.period}: {self.recipe.describe()} — validation {ch['psnr']:.1f} dB PSNR, MAE {ch['mae']:.4f} "
                f"on {self.n_pixels} held-out px ({self.n_examples} examples){vs}")


OUTSIDE_WARN = 0.25
"""Above this share of pixels seen only outside their period, the console says so."""


def sample_windows(ny: int, nx: int, window: int, max_windows: int) -> list[tuple[slice, slice]]:
    """Up to ``max_windows`` windows of ``window`` px spread evenly over an ``ny × nx`` area (the
    whole area where it is smaller than a window)."""
    def starts(n: int, k: int) -> list[int]:
        if n <= window:
            return [0]
        return sorted({int(round(v)) for v in np.linspace(0, n - window, k + 2)[1:-1]}) if k > 1 else [(n - window) // 2]

    k = max(1, int(math.floor(math.sqrt(max_windows))))
    ys, xs = starts(ny, k), starts(nx, k)
    return [(slice(y, min(y + window, ny)), slice(x, min(x + window, nx))) for y in ys for x in xs][:max_windows]


@dataclass
class _Example:
    """A footprint hidden on a target date: the pasted series is made when first used (and freed
    after), so many candidate footprints cost their masks only."""

    base_x: np.ndarray      # (T, C, h, w) the window as read
    base_clear: np.ndarray  # (T, h, w)
    target: int
    hidden: np.ndarray      # (h, w)
    vals: np.ndarray        # (C, h, w) what is pasted onto the target there
    cl: np.ndarray          # (h, w) the pasted clear flags

    @cached_property
    def x(self) -> np.ndarray:
        xx = self.base_x.copy()
        xx[self.target][:, self.hidden] = self.vals[:, self.hidden]
        return xx

    @cached_property
    def clear(self) -> np.ndarray:
        cc = self.base_clear.copy()
        cc[self.target][self.hidden] = self.cl[self.hidden]
        return cc

    @cached_property
    def truth(self) -> np.ndarray:  # (C, n)
        return self.base_x[self.target][:, self.hidden]

    def release(self) -> None:
        self.__dict__.pop("x", None)
        self.__dict__.pop("clear", None)


def _examples(x: np.ndarray, clear: np.ndarray, days: np.ndarray, target: int, cfg: ValidationConfig,
              rng: np.random.Generator) -> list[_Example]:
    """Footprints hidden on ``target``'s clear pixels: other dates' real cloud + shadow, grown by
    ``cfg.dilate`` (their values and mask pasted, edges included: what masks miss at a cloud's
    edge), their gaps without values as they are, and flipped copies of the target's own (its own
    cloudy values, flagged)."""
    has = np.isfinite(x).all(1)
    usable = clear.astype(bool) & has
    ok = usable[target]
    n_ok = int(ok.sum())
    if n_ok < 16:
        return []
    feet = []
    for s in range(len(x)):  # a footprint is what a date cannot use: cloud, shadow, or a gap without values
        if s != target and (~usable[s]).any():
            # flagged values are grown (a real cloud's edge is hazy where the mask ends); a gap is
            # not: its provider masked it already, and another date's values at its edge are no haze
            feet.append((dilate_cross(~usable[s] & has[s], cfg.dilate) | ~has[s], x[s], clear[s]))
    own = ~usable[target]
    if own.any():  # its own clouds elsewhere: cloudy values, flagged (a flipped edge would be another place's clear)
        for flip in ((0,), (1,), (0, 1)):
            foot = np.flip(own, flip)
            feet.append((foot, np.flip(x[target], tuple(a + 1 for a in flip)), np.zeros_like(foot)))
    out = []
    for foot, vals, cl in feet:
        hidden = foot & ok
        frac = hidden.sum() / n_ok
        if hidden.sum() < 16 or not 0.03 <= frac <= 0.9:
            continue
        out.append(_Example(x, clear, target, hidden, vals, cl))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def _candidates_on(ex: _Example, days: np.ndarray, bands, candidates: list[str], model, tiles) -> dict[str, np.ndarray]:
    """Each candidate's values at the example's hidden pixels, from the functions the outputs use:
    the model through :func:`~cloudfree.reconstruct.images.period_images` on the whole window (its
    context features see the neighbourhood), the compositing methods per pixel on the hidden
    pixels only (they are per pixel; least-cloudy's date is chosen on the whole window, as in a run)."""
    from .composites import METHODS, least_cloudy_date

    day = float(days[ex.target])
    out = {}
    x = ex.x[:, :, ex.hidden][..., None]  # (T, C, n, 1)
    c = ex.clear[:, ex.hidden][..., None]
    for name in candidates:
        if name == "model":
            out[name] = _model_at_hidden(ex, days, bands, model, tiles)
        elif name == "least_cloudy":
            usable = ex.clear.astype(bool) & np.isfinite(ex.x).all(1)
            out[name] = ex.x[least_cloudy_date(usable.reshape(len(usable), -1).mean(1), days, day)][:, ex.hidden]
        else:
            out[name] = METHODS[name](x, c, days, day)[:, :, 0]
    return out


def _model_at_hidden(ex: _Example, days: np.ndarray, bands, model, tiles) -> np.ndarray:
    """The model's values at the hidden pixels, computed on the window cut to them and the
    pixels that can reach them (a per-pixel model's context and departure radii: the values are
    those of the whole window); a model with spatial context sees the whole window."""
    from ..models.traits import model_traits

    ys, xs = np.nonzero(ex.hidden)
    traits = model_traits(model)
    if not traits.pixelwise or not len(ys):
        return _model_on(ex, days, bands, model, tiles)[:, ex.hidden]
    r = traits.context + 1
    h, w = ex.hidden.shape
    y0, y1, x0, x1 = max(0, ys.min() - r), min(h, ys.max() + r + 1), max(0, xs.min() - r), min(w, xs.max() + r + 1)
    x, c = ex.x[:, :, y0:y1, x0:x1], ex.clear[:, y0:y1, x0:x1]  # pasted already: the cut pastes nothing new
    cut = _Example(x, c, ex.target, ex.hidden[y0:y1, x0:x1], x[ex.target], c[ex.target])
    return _model_on(cut, days, bands, model, tiles)[:, cut.hidden]


def _model_on(ex: _Example, days: np.ndarray, bands, model, tiles) -> np.ndarray:
    """The model's (C, h, w) image of the example's window at its target's day, as a run makes it."""
    from .images import period_images
    from .periods import Period

    t, _, h, w = ex.x.shape
    day = float(days[ex.target])
    cube = xr.Dataset({"reflectance": (("time", "band", "y", "x"), ex.x),
                       "clear": (("time", "y", "x"), ex.clear.astype(np.uint8))},
                      coords={"time": days.astype("datetime64[D]").astype("datetime64[ns]"), "band": list(bands)})
    cube = cube.chunk({"time": 1, "band": -1, "y": -1, "x": -1})
    p = Period("validation", np.datetime64(int(day), "D"), np.datetime64(int(day), "D"), day, tuple(range(t)))
    ds = period_images(cube, [p], method="model", model=model, tiles=tiles, chunk=max(h, w), keep_guess=True)
    # the scheduler named for this compute only: dask.config.set is process-wide, and examples run on threads
    return ds["reflectance"].isel(time=0).compute(scheduler="sync").values


def _score(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = pred - truth
    mse = float(np.mean(err ** 2))
    return {"psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))), "mae": float(np.mean(np.abs(err))),
            "mae_per_band": [float(v) for v in np.mean(np.abs(err), axis=1)], "n": int(truth.shape[1])}


def _options(names: list[str], mse: dict[str, float]) -> list[Recipe]:
    """Single candidates and blends of the three best by ``mse`` (pairs at 1/4, 1/2, 3/4)."""
    top = sorted(names, key=lambda n: mse[n])[:3]
    opts = [Recipe.single(n) for n in names]
    for i, a in enumerate(top):
        for b in top[i + 1:]:
            for w in (0.25, 0.5, 0.75):
                opts.append(Recipe(((a, w), (b, 1 - w))))
    return opts


def _mse(recipe: Recipe, preds: list[dict[str, np.ndarray]], truths: list[np.ndarray]) -> float:
    num = sum(float(np.sum((recipe.apply(p) - t) ** 2)) for p, t in zip(preds, truths))
    den = sum(t.size for t in truths)
    return num / max(den, 1)


CLEAR_WIN_DB = 2.0
"""A recipe replaces the prior only where it beats it by this many dB of PSNR on *each* half of the
held-out pixels. Why: validation examples rank candidates only roughly (on real series their gains
over the model track the hidden truth's loosely), so a small validated gain is mostly noise; the
margin was chosen leaving one real place out (``benchmarks/selection_rules.py``, the figures in
``README.md``)."""


def _fit(candidates: list[str], preds: list[dict], truths: list[np.ndarray], prior: str,
         margin: float = CLEAR_WIN_DB) -> tuple[Recipe, list[int], str]:
    """Fit on one half of the examples, confirm on the other: (recipe, held-out indices, why).

    The prior (what the run would use without validation) is left only for a recipe that fits
    best on one half *and* beats the prior by ``margin`` dB (:data:`CLEAR_WIN_DB`) on both: one
    noisy half, or a gain within the validation's noise, never moves a run."""
    if len(preds) == 1:  # one example: its pixels in two interleaved halves
        preds = [{n: v[:, h::2] for n, v in preds[0].items()} for h in (0, 1)]
        truths = [truths[0][:, h::2] for h in (0, 1)]
    idx = np.arange(len(preds))
    a, b = idx[0::2], idx[1::2]
    pa, ta = [preds[i] for i in a], [truths[i] for i in a]
    pb, tb = [preds[i] for i in b], [truths[i] for i in b]
    mse_a = {n: _mse(Recipe.single(n), pa, ta) for n in candidates}
    fitted = min(_options(candidates, mse_a), key=lambda r: _mse(r, pa, ta))
    base = Recipe.single(prior) if prior in candidates else Recipe.single(min(candidates, key=lambda n: mse_a[n]))
    if fitted == base:
        return base, list(b), f"{prior} validated best"
    gain_a, gain_b = (_db(_mse(base, p, t), _mse(fitted, p, t)) for p, t in ((pa, ta), (pb, tb)))
    if gain_a >= margin and gain_b >= margin:
        return fitted, list(b), f"better than {base.describe()} by {min(gain_a, gain_b):.1f} dB or more on both halves of the held-out pixels"
    if gain_b > 0:
        return base, list(b), (f"{base.describe()} kept: {fitted.describe()} was better on both halves, by "
                               f"{gain_a:.1f} and {gain_b:.1f} dB, less than the {margin:g} dB a change needs")
    return base, list(b), f"{base.describe()} kept: {fitted.describe()} fitted better on one half, not on the other"


def _db(mse_before: float, mse_after: float) -> float:
    """PSNR gain in dB of going from ``mse_before`` to ``mse_after``."""
    return float(10 * np.log10(max(mse_before, 1e-12) / max(mse_after, 1e-12)))


def _uncertainty(recipe: Recipe, preds, truths, counts) -> list[float]:
    """68th percentile of the band-mean absolute error per clear-count bin (pooled where a bin is empty)."""
    err = np.concatenate([np.abs(recipe.apply(p) - t).mean(0) for p, t in zip(preds, truths)])
    cnt = np.concatenate(counts)
    pooled = float(np.quantile(err, 0.68)) if err.size else float("nan")
    edges = list(UNCERTAINTY_BINS) + [10 ** 9]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (cnt >= lo) & (cnt < hi)
        out.append(float(np.quantile(err[sel], 0.68)) if sel.sum() >= 30 else pooled)
    return out


def _targets(usable: list[np.ndarray], days: np.ndarray, target_day: float, min_pixels: int) -> list[int]:
    """The date nearest the target day with clear pixels; the next nearest too while the hidden
    part could stay thin (validation widened rather than skipped)."""
    total = np.array([sum(int(u[t].sum()) for u in usable) for t in range(len(days))])
    order = np.argsort(np.abs(days - target_day), kind="stable")
    out, seen = [], 0
    for t in order:
        if total[t] >= 16:
            out.append(int(t))
            seen += total[t]
            if seen >= WIDEN_BELOW * min_pixels or len(out) >= 3:
                break
    return out


def _threads(n: int) -> int:
    """Examples measured at once: their candidates are numpy and torch work that releases the GIL;
    each holds one pasted copy of its window while it runs."""
    import os

    return max(1, min(n, os.cpu_count() or 1, 16))


def _measured(ex: _Example, days, bands, candidates, model, tiles):
    """``(candidates' values, truth, clear counts)`` at the example's hidden pixels where every
    candidate and the truth have a value; None where fewer than 8 such pixels remain."""
    try:
        p = _candidates_on(ex, days, bands, candidates, model, tiles)
        ok = np.isfinite(ex.truth).all(0) & np.all([np.isfinite(v).all(0) for v in p.values()], axis=0)
        if ok.sum() < 8:
            return None
        n_clear = (ex.clear.astype(bool) & np.isfinite(ex.x).all(1)).sum(0)
        return {n: v[:, ok] for n, v in p.items()}, ex.truth[:, ok], n_clear[ex.hidden][ok]
    finally:
        ex.release()  # the pasted copy of the window goes with the example


def outside_share(usable: list[np.ndarray], days: np.ndarray, span: tuple[float, float] | None) -> float | None:
    """Share of pixels with data on some date but no usable date inside ``span`` (first, last day)."""
    if span is None:
        return None
    inside = (days >= span[0]) & (days <= span[1])
    seen = sum(int(u.any(0).sum()) for u in usable)
    if not seen:
        return None
    return float(sum(int((u.any(0) & ~u[inside].any(0)).sum()) for u in usable) / seen)


def validate_period(windows: list[xr.Dataset], label: str, target_day: float, candidates: list[str], *, model=None,
                    tiles=None, prior: str, cfg: ValidationConfig = ValidationConfig(),
                    span: tuple[float, float] | None = None) -> PeriodValidation:
    """Validate one period on in-memory windows of its dates (``reflectance``, ``clear``); ``span``:
    the period's first and last day (days since 1970), for :attr:`PeriodValidation.outside`."""
    from .tiles import TileConfig

    tiles = tiles or TileConfig()
    rng = np.random.default_rng(cfg.seed)
    days = windows[0].time.values.astype("datetime64[D]").astype(float)
    bands = [str(b) for b in windows[0].band.values]
    xs = [w["reflectance"].values.astype(np.float32) for w in windows]
    cs = [w["clear"].values.astype(bool) for w in windows]
    usable = [c & np.isfinite(x).all(1) for x, c in zip(xs, cs)]
    outside = outside_share(usable, days, span)
    targets = _targets(usable, days, target_day, cfg.min_pixels)
    exs: list[tuple[int, _Example]] = []
    for t in targets:
        for k, (x, c) in enumerate(zip(xs, cs)):
            exs += [(k, e) for e in _examples(x, c, days, t, cfg, rng)]
    rng.shuffle(exs)  # windows and targets mixed, then the halves alternate
    exs = exs[: cfg.max_examples]
    with ThreadPoolExecutor(_threads(len(exs))) as pool:  # results in the examples' order, whatever the threads
        measured = [m for m in pool.map(lambda e: _measured(e[1], days, bands, candidates, model, tiles), exs) if m]
    preds, truths, counts = [m[0] for m in measured], [m[1] for m in measured], [m[2] for m in measured]
    n_px = int(sum(t.shape[1] for t in truths))
    used = [str(np.datetime64(int(days[t]), "D")) for t in targets]
    if n_px < cfg.min_pixels or not preds:
        return PeriodValidation(label, Recipe.single(prior), f"validation too thin ({n_px} held-out px): the prior, "
                                f"{prior}", len(preds), n_px, used, thin=True, outside=outside)
    recipe, held, how = _fit(candidates, preds, truths, prior)
    if len(preds) == 1:
        held = [0]
    if "least_cloudy" in recipe.names:
        from .composites import least_cloudy_date

        frac = np.sum([u.reshape(len(u), -1).sum(1) for u in usable], 0) / sum(u[0].size for u in usable)
        recipe = Recipe(recipe.weights, least_cloudy_date(frac, days, target_day))
    if not cfg.adapt:
        recipe, how = Recipe.single(prior), "measured only (a fixed --method)"
    allp = {n: np.concatenate([p[n] for p in preds], 1) for n in candidates}
    allt = np.concatenate(truths, 1)
    scores = {n: _score(allp[n], allt) for n in candidates}
    scores["chosen"] = _score(recipe.apply(allp), allt)
    hp = {n: np.concatenate([preds[i][n] for i in held], 1) for n in candidates}
    ht = np.concatenate([truths[i] for i in held], 1)
    holdout = {n: _score(hp[n], ht) for n in candidates}
    holdout["chosen"] = _score(recipe.apply(hp), ht)
    return PeriodValidation(label, recipe, how, len(preds), n_px, used, scores, holdout,
                            _uncertainty(recipe, preds, truths, counts), outside=outside)


def validate_periods(read_window: Callable[[slice, slice, list[int]], xr.Dataset], shape: tuple[int, int], periods,
                     candidates: list[str], *, model=None, tiles=None, prior: str,
                     cfg: ValidationConfig = ValidationConfig(), echo=None) -> dict[str, PeriodValidation]:
    """:func:`validate_period` for every period; ``read_window(ys, xs, dates)`` gives a window of
    the cube (the dates' ``reflectance`` and ``clear``), lazily: a period's windows are computed
    together."""
    wins = sample_windows(shape[0], shape[1], cfg.window, cfg.max_windows)
    out = {}
    for p in periods:
        if not p.dates:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # one compute for every window: their reads overlap, and no graph is computed from two threads
            windows = list(dask.compute(*[read_window(ys, xs, list(p.dates)) for ys, xs in wins]))
            span = tuple(float(np.datetime64(d, "D").astype(float)) for d in (p.start, p.end))
            out[p.label] = validate_period(windows, p.label, p.target_day, candidates, model=model, tiles=tiles,
                                           prior=prior, cfg=cfg, span=span)
        if echo is not None:
            echo("validation " + out[p.label].summary())
            share = out[p.label].outside
            if share is not None and share > OUTSIDE_WARN:
                echo(f"warning: {p.label}: {100 * share:.0f} % of the sampled pixels have no clear observation inside "
                     "the period; their values come from dates before or after it (run.json, the STAC Item's "
                     "cloudfree:from_outside_period)")
    return out
