"""Pixels without a clear observation: which value to give them, measured on REAL series (issue 27, item 6).

    python benchmarks/unobserved_fill.py [--catalog ../shared/data/real-s2-l2a/catalog.json ...]
        [--window-days 45] --out benchmarks/results/unobserved_fill_cpu.json

A run's period sees the dates within ``--window-days`` of its target day. Where a pixel has no
clear observation among them, there is no truth to score on, so the truth is made: every clear
observation (pixel p, date t; SCL clear, finite, reflectance ≤ 1) whose window *without t* holds
no clear observation at p is a case — exactly the situation of a run whose target day is t and
whose window lost its one clear view. Candidates for the value, each scored (MAE and PSNR over
the bands, REAL truth):

* ``least_bad``: the window's observation (with data) of the least bad SCL class — thin cirrus,
  then medium cloud, cloud shadow, high cloud, anything else — nearest in time on a tie;
* ``nearest_clear``: the clear observation nearest in time outside the window (a widened window);
* ``interpolation_widened``: linear interpolation between the nearest clear observations before and
  after t outside the window (one side only: the nearest);
* ``median_widened``: the median of the clear observations within twice the window.

Prints one JSON line (machine, date, commit, data = real) and writes it to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_quality import _commit, _machine, emit  # noqa: E402

BADNESS = {10: 0, 8: 1, 3: 2, 9: 3}
"""SCL classes by how much they change a surface's values (cirrus least); other classes after them."""


def least_bad(x: np.ndarray, scl: np.ndarray, has: np.ndarray, days: np.ndarray, target_day: float) -> np.ndarray:
    """(C, N) values of each pixel's least-bad observation among dates with data (NaN where none):
    the lowest SCL badness, nearest in time on a tie. ``x`` (T, C, N), ``scl``/``has`` (T, N)."""
    rank = np.full(scl.shape, 9.0)
    for cls, r in BADNESS.items():
        rank[scl == cls] = r
    score = np.where(has, rank * 1e4 + np.abs(days - target_day)[:, None], np.inf)
    pick = score.argmin(0)
    out = np.take_along_axis(x, pick[None, None].repeat(x.shape[1], 1), 0)[0]
    return np.where(np.isfinite(score.min(0))[None], out, np.nan)


def _cases(refl, scl, clear, days, window):
    """(t, pixel index) pairs whose window without t holds no clear observation."""
    t_n = len(days)
    flat = clear.reshape(t_n, -1)
    for t in range(t_n):
        inw = np.flatnonzero((np.abs(days - days[t]) <= window) & (np.arange(t_n) != t))
        none = ~flat[inw].any(0) if len(inw) else np.ones(flat.shape[1], bool)
        yield t, inw, np.flatnonzero(flat[t] & none)


def score_series(refl: np.ndarray, scl: np.ndarray, clear: np.ndarray, days: np.ndarray, window: float) -> dict:
    """Absolute errors (band mean) of every candidate over all cases of one series."""
    t_n, c = refl.shape[:2]
    x = refl.reshape(t_n, c, -1)
    s = scl.reshape(t_n, -1)
    has = np.isfinite(x).all(1)
    cl = clear.reshape(t_n, -1)
    errs = {k: [] for k in ("least_bad", "nearest_clear", "interpolation_widened", "median_widened")}
    for t, inw, px in _cases(refl, scl, clear, days, window):
        if not len(px):
            continue
        truth = x[t][:, px]
        outside = (np.abs(days - days[t]) > window)
        cand = {}
        cand["least_bad"] = least_bad(x[inw][:, :, px], s[inw][:, px], has[inw][:, px], days[inw], days[t]) \
            if len(inw) else np.full_like(truth, np.nan)
        ok = cl[:, px] & outside[:, None]  # (T, P) clear and outside the window
        gap = np.where(ok, np.abs(days - days[t])[:, None], np.inf)
        near = gap.argmin(0)
        cand["nearest_clear"] = np.where(np.isfinite(gap.min(0))[None], x[near, :, px].T, np.nan)
        before = np.where(ok & (days < days[t])[:, None], days[t] - days[:, None], np.inf)
        after = np.where(ok & (days > days[t])[:, None], days[:, None] - days[t], np.inf)
        ib, ia = before.argmin(0), after.argmin(0)
        db, da = before.min(0), after.min(0)
        xb, xa = x[ib, :, px].T, x[ia, :, px].T
        wb = np.where(np.isfinite(db) & np.isfinite(da), da / np.maximum(db + da, 1e-9), np.isfinite(db).astype(float))
        interp = wb[None] * np.nan_to_num(xb) + (1 - wb[None]) * np.nan_to_num(xa)
        cand["interpolation_widened"] = np.where((np.isfinite(db) | np.isfinite(da))[None], interp, np.nan)
        wide = cl[:, px] & (np.abs(days - days[t]) <= 2 * window)[:, None] & (np.arange(t_n) != t)[:, None]
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cand["median_widened"] = np.nanmedian(np.where(wide[:, None], x[:, :, px], np.nan), axis=0)
        for k, v in cand.items():
            errs[k].append(np.abs(v - truth).mean(0))  # band mean; NaN where the candidate has no value
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in errs.items()}


def summarize(errs: dict) -> dict:
    """Per candidate: the share of cases it gives a value at all, and its MAE / PSNR on the cases
    where every candidate gives one (the same pixels for all)."""
    n = len(next(iter(errs.values())))
    both = np.ones(n, bool)
    for v in errs.values():
        both &= np.isfinite(v)
    out = {"cases": int(n), "cases_every_candidate": int(both.sum())}
    for k, v in errs.items():
        e = v[both]
        out[k] = {"coverage": float(np.isfinite(v).mean()) if n else 0.0,
                  "mae": float(e.mean()) if len(e) else None,
                  "psnr": float(10 * np.log10(1 / max(float((e ** 2).mean()), 1e-12))) if len(e) else None}
    return out


def main(argv=None) -> dict:
    import cloudfree
    from cloudfree.bands import CLEAR_SCL, MAX_REFLECTANCE
    from cloudfree.catalog.sources import read_static_items

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", nargs="+", default=[str(ROOT.parent / "shared" / "data" / "real-s2-l2a" / "catalog.json")])
    ap.add_argument("--window-days", type=float, default=45)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    commit, t0 = _commit(), time.time()
    per, pooled = {}, None
    for catalog in a.catalog:
        items = read_static_items(catalog)
        for c in sorted({i.collection_id for i in items}):
            its = [i for i in items if i.collection_id == c]
            days_s = sorted(str(i.datetime)[:10] for i in its)
            found = cloudfree.search(catalog, days_s[0], days_s[-1], collection=c)
            res = {x.extra_fields["proj:transform"][0] for x in found[0].assets.values() if "proj:transform" in x.extra_fields}
            cube = cloudfree.load_cube(found, None, resolution=min(res) if res else None).compute()
            refl, scl = cube["reflectance"].values, cube["scl"].values
            clear = np.isin(scl, CLEAR_SCL) & np.isfinite(refl).all(1) & (refl <= MAX_REFLECTANCE).all(1)
            days = cube.time.values.astype("datetime64[D]").astype(float)
            errs = score_series(refl, scl, clear, days, a.window_days)
            per[c] = summarize(errs)
            pooled = errs if pooled is None else {k: np.concatenate([pooled[k], v]) for k, v in errs.items()}
            print(c, per[c], file=sys.stderr, flush=True)
    line = {"benchmark": "unobserved_fill", "data": "real", "machine": _machine(), "date": dt.date.today().isoformat(),
            "commit": commit, "window_days": a.window_days, "catalogs": a.catalog, "per_series": per,
            "pooled": summarize(pooled), "seconds": round(time.time() - t0, 1)}
    return emit(line, a.out)


if __name__ == "__main__":
    main()
