"""The real-series protocol: hide a truly clear date under another date's real clouds.

A target date that SCL and a brightness test call clear gets, where a source date is cloud or
shadow (SCL 3, 8, 9, 10, dilated to take the edges SCL leaves out), that source date's *real*
reflectance and *real* SCL pasted in. Methods then see what real series show: cloud that SCL
flags, and cloud edges and haze it calls clear. The truth at the pasted pixels is the target's own
clear value. Everything runs through :func:`cloudfree.reconstruct`, as ``cloudfree run`` does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from ..bands import CLEAR_SCL, CLOUD_SHADOW_SCL, MAX_REFLECTANCE
from ..bands import dilate_cross

__all__ = ["clear_targets", "cloud_sources", "paste", "Setting", "score_setting", "learned_classes", "summarize_settings",
           "CLOUD_SHADOW_SCL", "CLEAR_SCL"]



def _haze_score(refl: np.ndarray, scl: np.ndarray, bands: list[str]) -> np.ndarray:
    """Per date: median excess of the shortest-wavelength band over its per-pixel temporal median
    on SCL-clear pixels (haze brightens blue first; SCL often calls it clear)."""
    from ..bands import L2A_BANDS

    b = min(range(len(bands)), key=lambda i: L2A_BANDS.index(bands[i]))
    x = np.where(np.isin(scl, CLEAR_SCL), refl[:, b], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=0)
        return np.nanmedian(x - med[None], axis=(1, 2))


def clear_targets(refl: np.ndarray, scl: np.ndarray, bands: list[str], *, min_clear: float = 0.98,
                  max_unclassified: float = 0.01, max_haze: float = 0.02, min_valid: float = 0.999) -> list[int]:
    """Dates that are truly clear: SCL clear classes ≥ ``min_clear`` of the patch, little SCL 7,
    all bands valid, and not brighter than the series in the blue-most band (haze)."""
    ever = np.isfinite(refl).all(1).any(0)  # pixels some date has data for (not outside a field polygon)
    m = max(int(ever.sum()), 1)
    frac_clear = np.isin(scl, CLEAR_SCL)[:, ever].sum(1) / m
    frac_7 = (scl == 7)[:, ever].sum(1) / m
    valid = np.isfinite(refl).all(1)[:, ever].sum(1) / m
    haze = _haze_score(refl, scl, bands)
    ok = (frac_clear >= min_clear) & (frac_7 <= max_unclassified) & (valid >= min_valid) & (np.nan_to_num(haze, nan=1) <= max_haze)
    return [int(i) for i in np.flatnonzero(ok)]


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    return dilate_cross(mask, px)


def cloud_sources(scl: np.ndarray, *, dilate: int = 2, lo: float = 0.1, hi: float = 0.9) -> list[tuple[int, float]]:
    """(date, covered fraction) of dates whose dilated cloud+shadow covers ``lo``–``hi`` of the patch."""
    out = []
    for s in range(scl.shape[0]):
        frac = float(_dilate(np.isin(scl[s], CLOUD_SHADOW_SCL), dilate).mean())
        if lo <= frac <= hi:
            out.append((s, frac))
    return out


def paste(refl: np.ndarray, scl: np.ndarray, target: int, source: int, dilate: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(refl, scl, hidden): copies with the source's real values and SCL pasted onto the target
    where the source's dilated cloud+shadow lies; ``hidden`` marks those pixels. Where the source
    has no values (a series whose provider blanked its clouds), the gap itself is pasted."""
    hidden = (_dilate(np.isin(scl[source], CLOUD_SHADOW_SCL), dilate) & np.isfinite(refl[target]).all(0)
              & np.isin(scl[target], CLEAR_SCL))
    r, s = refl.copy(), scl.copy()
    r[target][:, hidden] = refl[source][:, hidden]
    s[target][hidden] = scl[source][hidden]
    return r, s, hidden


@dataclass
class Setting:
    """One scored case: a collection, a target date, a source of real clouds."""

    collection: str
    target: str
    source: str
    cover: float
    """Fraction of the patch hidden."""
    scores: dict[str, dict[str, float]]
    """method → metrics on the hidden pixels every method has a value for."""
    scored_fraction: float
    """Fraction of hidden pixels all methods had a value for (NaN: no clear observation)."""
    n_dates: int = 0
    """Dates in the setting's window (the series length the methods saw)."""
    coverage: dict | None = None
    """Method → [hidden pixels inside its ±uncertainty, pixels scored] (methods with an uncertainty layer)."""
    used: dict | None = None
    """Method → what the run reported it used (``method`` attribute: a candidate, ``adaptive``)."""


def learned_classes(refl: np.ndarray, bands: list[str]) -> np.ndarray:
    """(T, H, W) ukis-csmask classes of in-memory reflectance (T, C, H, W), as the cube computes them."""
    from ..blocks import symmetric_index
    from ..cube.masks import HALO, classify, csmask_bands

    need = csmask_bands(bands)
    if need is None:
        raise LookupError(f"no learned mask for bands {bands}")
    sub = refl[:, [bands.index(b) for b in need]]
    iy, ix = symmetric_index(sub.shape[2], HALO), symmetric_index(sub.shape[3], HALO)
    return np.stack([classify(d[:, iy][:, :, ix], (0, 0)) for d in sub])


def score_setting(cube, target: int, source: int, methods: dict[str, dict], *, window_days: int = 45,
                  dilate: int = 2, mask_classes: tuple[int, ...] | None = None, mask_source: str = "scl",
                  cloud_class: np.ndarray | None = None) -> tuple[np.ndarray, dict, dict]:
    """Paste, reconstruct with every method through :func:`cloudfree.reconstruct`, score.

    ``cube`` is an in-memory cube (``reflectance``, ``scl``); ``methods`` maps a name to the
    keyword arguments of :func:`cloudfree.reconstruct` (e.g. ``{"method": "median"}``).
    ``mask_source`` ``model``/``both`` uses the learned mask (``cloud_class`` of every date, from
    :func:`learned_classes`; the pasted target's classes are recomputed from its pasted values).
    Returns (hidden mask, predictions, metrics per method).
    """
    from ..cube.load import MaskConfig
    from ..reconstruct.dataset import reconstruct
    from .metrics import all_metrics

    refl = cube["reflectance"].values
    scl = cube["scl"].values
    r, s, hidden = paste(refl, scl, target, source, dilate)
    unusable = list(mask_classes if mask_classes is not None else MaskConfig().unusable)
    bad = np.isin(s, unusable)
    if mask_source != "scl":
        bands = [str(b) for b in cube.band.values]
        cls = cloud_class.copy() if cloud_class is not None else learned_classes(refl, bands)
        cls[target] = learned_classes(r[target : target + 1], bands)[0]
        model_bad = np.isin(cls, [1, 2])
        bad = model_bad if mask_source == "model" else (bad | model_bad)
    clear = (~bad & np.isfinite(r).all(1) & (r <= MAX_REFLECTANCE).all(1)).astype(np.uint8)  # as a run's cube
    mod = cube.copy()
    mod["reflectance"] = (cube["reflectance"].dims, r)
    mod["clear"] = (("time", "y", "x"), clear)
    mod["scl"] = (("time", "y", "x"), s)
    day = np.datetime64(cube.time.values[target], "D")
    start, end = str(day - np.timedelta64(window_days, "D")), str(day + np.timedelta64(window_days, "D"))
    mod = mod.chunk({"time": 1, "y": -1, "x": -1})
    preds, unc, recipes = {}, {}, {}
    for name, kw in methods.items():
        out = reconstruct(mod, start, end, context_days=0, max_dates=4 * window_days, **kw)
        preds[name] = out["reflectance"].isel(time=0).values
        if "uncertainty" in out:
            unc[name] = out["uncertainty"].isel(time=0).values
        recipes[name] = out.attrs.get("method", "")
    truth = refl[target]
    both = hidden & np.all([np.isfinite(p).all(0) for p in preds.values()], axis=0)
    metrics = {name: all_metrics(p, truth, both) for name, p in preds.items()} if both.any() else {}
    coverage = {name: [int((np.abs(preds[name] - truth).mean(0)[both] <= u[both]).sum()), int(both.sum())]
                for name, u in unc.items()}
    return hidden, preds, {"metrics": metrics, "scored_fraction": float(both.sum() / max(hidden.sum(), 1)),
                           "coverage": coverage, "methods_used": recipes}


def _bin(cover: float) -> str:
    lo = min(int(cover * 4), 3) * 25
    return f"{lo}-{lo + 25}%"


def summarize_settings(settings: list[Setting], model: str = "model") -> dict:
    """Means per method; paired PSNR differences model − best compositing method per setting (mean,
    standard error, win rate), overall, per collection and per cloud-cover bin."""
    from ..reconstruct.composites import METHODS as COMPOSITING

    methods = sorted({m for s in settings for m in s.scores})
    comp = [m for m in methods if m != model and m in COMPOSITING]  # other models are not the bar

    def agg(group: list[Setting]) -> dict:
        out: dict = {"n": len(group), "methods": {}}
        for m in methods:
            vals = {k: [s.scores[m][k] for s in group if m in s.scores and math.isfinite(s.scores[m][k])]
                    for k in ("psnr", "ssim", "sam", "mae")}
            out["methods"][m] = {k: (float(np.mean(v)) if v else float("nan")) for k, v in vals.items()}
        if model in methods and comp:
            d_best = [s.scores[model]["psnr"] - max(s.scores[c]["psnr"] for c in comp) for s in group]
            d_med = [s.scores[model]["psnr"] - s.scores["median"]["psnr"] for s in group if "median" in s.scores]
            out["model_minus_best_psnr"] = _mean_se(d_best)
            out["model_wins"] = float(np.mean([d > 0 for d in d_best])) if d_best else float("nan")
            out["model_minus_median_psnr"] = _mean_se(d_med)
            if d_best:
                k = int(np.argmin(d_best))
                out["worst_setting"] = {"margin_psnr": float(d_best[k]), "collection": group[k].collection,
                                        "target": group[k].target, "source": group[k].source}
                out["settings_below_best_by_0_5_db"] = int(sum(d < -0.5 for d in d_best))
            cov = [s.coverage[model] for s in group if s.coverage and model in s.coverage]
            if cov:
                out["uncertainty_coverage_68"] = float(sum(c[0] for c in cov) / max(1, sum(c[1] for c in cov)))
        best = {c: 0 for c in comp}
        for s in group:
            if comp:
                best[max(comp, key=lambda c: s.scores[c]["psnr"])] += 1
        out["best_compositing_counts"] = best
        return out

    res = {"overall": agg(settings), "by_collection": {}, "by_cover": {}, "by_series_length": {}}
    for b in sorted({_length_bin(s.n_dates) for s in settings}):
        res["by_series_length"][b] = agg([s for s in settings if _length_bin(s.n_dates) == b])
    for c in sorted({s.collection for s in settings}):
        res["by_collection"][c] = agg([s for s in settings if s.collection == c])
    for b in sorted({_bin(s.cover) for s in settings}):
        res["by_cover"][b] = agg([s for s in settings if _bin(s.cover) == b])
    return res


def _length_bin(n: int) -> str:
    return "<=8 dates" if n <= 8 else ("9-30 dates" if n <= 30 else ">30 dates")


def _mean_se(v: list[float]) -> dict:
    v = [x for x in v if math.isfinite(x)]
    if not v:
        return {"mean": float("nan"), "se": float("nan"), "n": 0}
    return {"mean": float(np.mean(v)), "se": float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan"),
            "n": len(v)}
