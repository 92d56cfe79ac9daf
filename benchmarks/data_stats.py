"""Real vs SYNTHETIC series: the statistics a model trained on one must meet in the other.

    python benchmarks/data_stats.py --out benchmarks/results/data_stats.json

For the four real collections (``../shared/data/real-s2-l2a``, through ``cloudfree.search`` →
``load_cube``) and simulated scenes (``cloudfree.catalog.simulate``): clear-sky band means and
standard deviations, the red–NIR correlation, lag-1 autocorrelation of clear observations ≤ 15 days
apart, spatial texture (mean absolute difference of neighbouring pixels), the share of dates over
half cloudy, and how often SCL calls an observation clear although it is > 4 robust z off its
pixel's series (haze and cloud edges SCL misses). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
UNUSABLE = (0, 1, 3, 8, 9, 10)


def stats(refl: np.ndarray, scl: np.ndarray, days: np.ndarray, bands: list[str]) -> dict:
    """refl (T, C, H, W), scl (T, H, W), days (T,)."""
    clear = ~np.isin(scl, UNUSABLE) & np.isfinite(refl).all(1)
    x = np.where(clear[:, None], refl, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(x, axis=(0, 2, 3))
        std = np.nanstd(x, axis=(0, 2, 3))
        med = np.nanmedian(x, axis=0)
        mad = np.nanmedian(np.abs(x - med[None]), axis=0)
    out = {"bands": bands, "dates": int(len(days)), "clear_mean": dict(zip(bands, np.round(mean, 4).tolist())),
           "clear_std": dict(zip(bands, np.round(std, 4).tolist()))}
    if "B04" in bands and "B08" in bands:
        r, n = x[:, bands.index("B04")].ravel(), x[:, bands.index("B08")].ravel()
        ok = np.isfinite(r) & np.isfinite(n)
        out["corr_red_nir"] = round(float(np.corrcoef(r[ok], n[ok])[0, 1]), 3)
    b = bands.index("B08") if "B08" in bands else len(bands) - 1
    pairs = []
    for i in range(len(days) - 1):
        j = i + 1
        if days[j] - days[i] <= 15:
            a, c = x[i, b].ravel(), x[j, b].ravel()
            ok = np.isfinite(a) & np.isfinite(c)
            if ok.sum() > 50:
                pairs.append(np.corrcoef(a[ok], c[ok])[0, 1])
    out[f"lag1_autocorr_{bands[b]}_le15d"] = round(float(np.mean(pairs)), 3) if pairs else None
    tex = np.nanmean(np.abs(np.diff(x[:, b], axis=-1)))
    out[f"texture_{bands[b]}"] = round(float(tex), 4)
    out["dates_over_half_cloudy"] = round(float((clear.reshape(len(days), -1).mean(1) < 0.5).mean()), 3)
    z = np.abs(x - med[None]) / (mad[None] + 0.01)
    off = (np.nanmean(z, axis=1) > 4) & clear
    out["scl_clear_but_off_series"] = round(float(off.sum() / max(clear.sum(), 1)), 4)
    return out


def main(argv=None) -> dict:
    import cloudfree
    from cloudfree.bands import L2A_BANDS
    from cloudfree.catalog.simulate import simulate_scene
    from cloudfree.catalog.sources import read_static_items

    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", default=str(ROOT.parent / "shared" / "data" / "real-s2-l2a" / "catalog.json"))
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    real = {}
    items = read_static_items(a.catalog)
    for c in sorted({i.collection_id for i in items}):
        days = sorted(str(i.datetime)[:10] for i in items if i.collection_id == c)
        cube = cloudfree.load_cube(cloudfree.search(a.catalog, days[0], days[-1], collection=c), None).compute()
        real[c] = stats(cube["reflectance"].values, cube["scl"].values,
                        cube.time.values.astype("datetime64[D]").astype(float), [str(b) for b in cube.band.values])
    synth = {}
    for seed in range(1000, 1000 + a.scenes):
        sc = simulate_scene(seed, 120, 36)
        synth[f"seed{seed}"] = stats(sc.observed, sc.scl, sc.dates.astype("datetime64[D]").astype(float), list(L2A_BANDS))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    line = {"benchmark": "data_stats", "date": dt.date.today().isoformat(), "commit": commit, "real": real,
            "synthetic": synth}
    text = json.dumps(line)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return line


if __name__ == "__main__":
    main()
