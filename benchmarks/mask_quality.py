"""Learned cloud mask (ukis-csmask) vs SCL on REAL Sentinel-2 series, and what each does downstream.

    python benchmarks/mask_quality.py --out benchmarks/results/mask_quality_cpu.json --pictures benchmarks/results/masks

Per collection of ``../shared/data/real-s2-l2a`` that has the bands the learned mask reads (B02 B03
B04 B08, + B11 B12 for the 6-band model): per date, the fraction flagged by SCL (default classes), by
the model (cloud + shadow) and by both; a contact sheet PNG (RGB, SCL mask, model mask) per
collection; and the real quality protocol of ``benchmarks/real_quality.py`` (real clouds and their
SCL pasted onto truly clear dates) with the clear mask from each source, for the median,
interpolation and the model. Collections without those bands are listed as falling back to SCL.
The model rows are on collections the model was trained on (the held-out test collection has no
B02-B04/B08): compare mask sources within a method, not the model with the compositing methods.
Also times the mask on a 1024² block of 12 dates (CPU) against loading that block from Zarr.
Prints one JSON line.
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
from real_quality import _commit, _machine, emit  # noqa: E402

SOURCES = ("scl", "model", "both")


def contact_sheet(cube, cls: np.ndarray, scl_bad: np.ndarray, path: Path, max_dates: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bands = [str(b) for b in cube.band.values]
    t_all = np.arange(cube.sizes["time"])
    pick = t_all[np.linspace(0, len(t_all) - 1, min(max_dates, len(t_all))).round().astype(int)]
    fig, axes = plt.subplots(3, len(pick), figsize=(1.6 * len(pick), 5.2), squeeze=False, layout="constrained")
    idx = [bands.index(b) for b in ("B04", "B03", "B02")]
    for c, t in enumerate(pick):
        rgb = np.clip(np.nan_to_num(cube["reflectance"].values[t, idx]).transpose(1, 2, 0) * 3.5, 0, 1) ** (1 / 1.2)
        model_bad = np.isin(cls[t], [1, 2])
        for r, (img, title) in enumerate([(rgb, str(cube.time.values[t])[:10]),
                                          (scl_bad[t], f"SCL {scl_bad[t].mean():.0%}"),
                                          (model_bad, f"model {model_bad.mean():.0%}")]):
            axes[r, c].imshow(img, cmap=None if r == 0 else "gray_r", vmin=0, vmax=1)
            axes[r, c].set_title(title, fontsize=7)
            axes[r, c].axis("off")
    fig.suptitle(f"{path.stem}: RGB / SCL unusable (black) / learned cloud+shadow (black) — REAL data", fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def speed(size: int = 1024, dates: int = 12, tmp: Path = Path("/tmp/cloudfree-mask-speed")) -> dict:
    """Seconds for the learned mask of a size² block of ``dates`` dates (6 bands) vs loading it from Zarr."""
    import shutil

    import dask
    import xarray as xr

    from cloudfree.cube.masks import learned_mask

    rng = np.random.default_rng(0)
    refl = rng.uniform(0.01, 0.5, (dates, 6, size, size)).astype(np.float32)
    da_ = xr.DataArray(refl, dims=("time", "band", "y", "x"),
                       coords={"band": ["B02", "B03", "B04", "B08", "B11", "B12"], "time": np.arange(dates),
                               "y": np.arange(size), "x": np.arange(size)})
    shutil.rmtree(tmp, ignore_errors=True)
    ((da_ * 1e4).astype(np.uint16).to_dataset(name="reflectance")
     .chunk({"time": 1, "band": -1, "y": size, "x": size}).to_zarr(tmp, zarr_format=3))
    t0 = time.perf_counter()
    loaded = xr.open_zarr(tmp)["reflectance"].astype(np.float32).compute() * 1e-4
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        learned_mask(loaded.chunk({"time": 1, "band": -1, "y": size, "x": size}), chunk=size).compute()
    mask_s = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    return {"block": f"{size}x{size}", "dates": dates, "bands": 6, "mask_seconds": round(mask_s, 2),
            "load_from_zarr_seconds": round(load_s, 2), "mpx_per_s": round(size * size * dates / mask_s / 1e6, 3),
            "device": "cpu (onnxruntime)"}


def main(argv=None) -> dict:
    import cloudfree
    from cloudfree.catalog.sources import read_static_items
    from cloudfree.cube.masks import csmask_bands
    from cloudfree.evaluate.pasted import (Setting, clear_targets, cloud_sources, learned_classes, score_setting,
                                           summarize_settings)

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", default=str(ROOT.parent / "shared" / "data" / "real-s2-l2a" / "catalog.json"))
    ap.add_argument("--max-targets", type=int, default=8)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--window-days", type=int, default=45)
    ap.add_argument("--out", default=None)
    ap.add_argument("--pictures", default=None)
    ap.add_argument("--no-speed", action="store_true")
    a = ap.parse_args(argv)
    items = read_static_items(a.catalog)
    t0 = time.time()
    per_date, fallback, settings = {}, {}, {src: [] for src in SOURCES}
    methods = {"model": {"method": "model"}, "median": {"method": "median"}, "interpolation": {"method": "interpolation"}}
    for c in sorted({i.collection_id for i in items}):
        its = [i for i in items if i.collection_id == c]
        days = sorted(str(i.datetime)[:10] for i in its)
        cube = cloudfree.load_cube(cloudfree.search(a.catalog, days[0], days[-1], collection=c), None).compute()
        bands = [str(b) for b in cube.band.values]
        if csmask_bands(bands) is None:
            fallback[c] = f"bands {', '.join(bands)}: no learned mask (needs B02, B03, B04, B08); SCL"
            continue
        refl, scl = cube["reflectance"].values, cube["scl"].values
        cls = learned_classes(refl, bands)
        scl_bad = np.isin(scl, [0, 1, 3, 8, 9, 10])
        model_bad = np.isin(cls, [1, 2])
        per_date[c] = [{"date": str(cube.time.values[t])[:10], "scl": round(float(scl_bad[t].mean()), 3),
                        "model": round(float(model_bad[t].mean()), 3),
                        "both": round(float((scl_bad[t] | model_bad[t]).mean()), 3)} for t in range(len(cls))]
        if a.pictures:
            Path(a.pictures).mkdir(parents=True, exist_ok=True)
            contact_sheet(cube, cls, scl_bad, Path(a.pictures) / f"{c}.png")
        rng = np.random.default_rng(0)
        targets = clear_targets(refl, scl, bands)
        if len(targets) > a.max_targets:
            targets = sorted(rng.choice(targets, a.max_targets, replace=False).tolist())
        for t in targets:
            near = [(s, f) for s, f in cloud_sources(scl) if s != t and abs((cube.time.values[s] - cube.time.values[t]) /
                                                                           np.timedelta64(1, "D")) <= 3 * a.window_days]
            pick = [near[i] for i in sorted(rng.choice(len(near), min(a.sources, len(near)), replace=False))] if near else []
            for s, frac in pick:
                for src in SOURCES:
                    _, _, res = score_setting(cube, t, s, methods, window_days=a.window_days, mask_source=src,
                                              cloud_class=cls)
                    if res["metrics"]:
                        settings[src].append(Setting(c, str(cube.time.values[t])[:10], str(cube.time.values[s])[:10],
                                                     frac, res["metrics"], res["scored_fraction"]))
        print(f"{c}: {len(targets)} targets, {len(settings['scl'])} settings so far", file=sys.stderr)
    summary = {src: summarize_settings(v, model="model")["overall"] for src, v in settings.items() if v}
    by_collection = {src: {k: v["methods"] for k, v in summarize_settings(st, model="model")["by_collection"].items()}
                     for src, st in settings.items() if st}
    line = {"benchmark": "mask_quality", "data": "real (../shared/data/real-s2-l2a)", "machine": _machine(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
            "mask_model": "ukis-csmask 1.0.0 L2A (6-band where B11/B12 exist, else 4-band)",
            "fallback_collections": fallback, "flagged_per_date": per_date, "downstream": summary,
            "downstream_by_collection": by_collection, "n_settings": {k: len(v) for k, v in settings.items()},
            "speed": None if a.no_speed else speed(), "seconds": round(time.time() - t0, 1)}
    return emit(line, a.out)


if __name__ == "__main__":
    main()
