"""Real-data quality: cloudfree's default (what ``cloudfree run`` does) vs every compositing method
on real Sentinel-2 L2A series with real clouds pasted onto truly clear dates (REAL data).

    python benchmarks/real_quality.py --catalog ../shared/data/real-s2-l2a/catalog.json \
        --out benchmarks/results/real_quality_cpu.json [--model path] [--collections a,b]

Per collection: the whole patch, every band it has, at its native resolution (the library calls
``cloudfree.search`` → ``cloudfree.load_cube`` → ``cloudfree.reconstruct`` with their defaults).
Targets: dates SCL calls ≥ 98 % clear with little SCL 7 and no haze by a blue-band brightness test.
Sources: dates whose cloud+shadow (dilated 2 px) covers 10–90 % of the patch; their real values and
SCL are pasted onto the target; scores on the pasted pixels, ±45-day window with every date in it.
The TerraMind path (``benchmarks/weights/terramind_tiny_real.safetensors``, when terratorch is
installed) is scored beside the default as method ``terramind``. Prints one JSON line (machine, date, commit, data = real) and writes it to ``--out``.

Leave one place out: ``--lopo DIR`` scores each collection with ``DIR/without_<collection>.safetensors``
where that file exists (a prior trained without the place, ``pipelines/train_pixel_model.py train
--leave-out``) and with ``--model`` elsewhere; the file records which checkpoint scored each place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TERRAMIND = ROOT / "benchmarks" / "weights" / "terramind_tiny_real.safetensors"
"""TerraMind-tiny refining the default model, trained here on the training collections (model card)."""
TEST_COLLECTION = "worldcereal_000028085BF08E7E"
"""The held-out real test collection: never trained or selected on (see the model card)."""


def _commit() -> str:
    """The commit the code runs from (call it at start: a long run outlives later commits);
    ``+dirty`` where tracked Python files differ from it."""
    import os

    if os.environ.get("CLOUDFREE_COMMIT"):  # a copy without .git (the GPU host)
        return os.environ["CLOUDFREE_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "*.py"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def emit(line: dict, out: str | None) -> dict:
    """Print the result as one JSON line and write it to ``out`` (if given)."""
    text = json.dumps(line, default=float)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return line


def _machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)}, {__import__('os').cpu_count()} CPU cores"
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPU cores, no GPU"


def collection_cube(catalog: str, items):
    """One collection's whole patch, every band, on the items' own grid, in memory (through
    ``cloudfree.search`` and ``cloudfree.load_cube`` with their defaults)."""
    import cloudfree

    days = sorted(str(i.datetime)[:10] for i in items)
    found = cloudfree.search(catalog, days[0], days[-1], collection=items[0].collection_id)
    res = {x.extra_fields["proj:transform"][0] for x in found[0].assets.values() if "proj:transform" in x.extra_fields}
    return cloudfree.load_cube(found, None, resolution=min(res) if res else None).compute()


def setting_pairs(cube, *, min_clear: float, max_targets: int, sources: int, window_days: int) -> list[tuple[int, int, float]]:
    """``(target, source, covered fraction)`` of the settings: truly clear targets (at most
    ``max_targets``, drawn with seed 0) and, per target, up to ``sources`` dates within three
    windows whose real clouds are pasted onto it."""
    from cloudfree.evaluate.pasted import clear_targets, cloud_sources

    bands = [str(b) for b in cube.band.values]
    refl, scl = cube["reflectance"].values, cube["scl"].values
    targets = clear_targets(refl, scl, bands, min_clear=min_clear, min_valid=min(0.999, min_clear))
    rng = np.random.default_rng(0)
    if len(targets) > max_targets:
        targets = sorted(rng.choice(targets, max_targets, replace=False).tolist())
    found = cloud_sources(scl)
    out = []
    for t in targets:
        near = [(s, f) for s, f in found if s != t and abs((cube.time.values[s] - cube.time.values[t]) /
                                                         np.timedelta64(1, "D")) <= 3 * window_days]
        pick = [near[i] for i in sorted(rng.choice(len(near), min(sources, len(near)), replace=False))] if near else []
        out += [(t, s, f) for s, f in pick]
    return out


def main(argv=None) -> dict:
    from cloudfree.evaluate.pasted import Setting, score_setting, summarize_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", default=str(ROOT.parent / "shared" / "data" / "real-s2-l2a" / "catalog.json"))
    ap.add_argument("--collections", default="all")
    ap.add_argument("--model", default=None, help="checkpoint for the default method (default: the shipped weights)")
    ap.add_argument("--terramind", default=str(TERRAMIND) if TERRAMIND.exists() else None,
                    help="also score this pixel_terramind checkpoint (the TerraMind path) as method 'terramind' "
                         "(default: benchmarks/weights/terramind_tiny_real.safetensors; 'none' to skip)")
    ap.add_argument("--max-targets", type=int, default=8)
    ap.add_argument("--min-clear", type=float, default=0.98,
                    help="a target date is at least this clear (only its clear pixels are ever hidden and scored)")
    ap.add_argument("--sources", type=int, default=3, help="cloud sources per target")
    ap.add_argument("--window-days", type=int, default=45)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-model-row", action="store_true", help="skip the fixed model (without self-validation) row")
    ap.add_argument("--lopo", default=None, help="folder of without_<collection>.safetensors: each place is scored "
                                                 "with the prior trained without it (leave one place out)")
    a = ap.parse_args(argv)
    commit = _commit()
    if a.terramind in (None, "none"):
        a.terramind = None
    else:
        try:
            import terratorch  # noqa: F401
        except ImportError:
            print("terratorch is not installed: the TerraMind row is skipped (pip install 'cloudfree[terramind]')",
                  file=sys.stderr)
            a.terramind = None
    from cloudfree.catalog.sources import read_static_items

    items = read_static_items(a.catalog)
    collections = sorted({i.collection_id for i in items}) if a.collections == "all" else a.collections.split(",")
    from cloudfree.reconstruct.selfcheck import ValidationConfig

    fixed = ValidationConfig(enabled=False)  # the yardsticks as they are, without a run's own validation

    def methods_for(model: str | None) -> dict:
        ms = {"default": {"method": "auto", "model": model, "device": a.device},
              "model": {"method": "model", "model": model, "device": a.device, "validation": fixed},
              **{m: {"method": m, "validation": fixed} for m in ("median", "interpolation", "mosaicking",
                                                                 "least_cloudy")}}
        if a.no_model_row:
            ms.pop("model")
        if a.terramind:
            ms["terramind"] = {"method": "model", "model": a.terramind, "device": a.device, "validation": fixed}
        return ms

    settings: list[Setting] = []
    resolved: dict[str, str] = {}
    scored_with: dict[str, str] = {}
    t0 = time.time()
    for c in collections:
        own = Path(a.lopo) / f"without_{c}.safetensors" if a.lopo else None
        model = str(own) if own is not None and own.exists() else a.model
        scored_with[c] = (f"{own.name} (trained without {c})" if model == str(own)
                          else (a.model or "shipped default"))
        methods = methods_for(model)
        its = [i for i in items if i.collection_id == c]
        cube = collection_cube(a.catalog, its)
        bands = [str(b) for b in cube.band.values]
        from cloudfree.reconstruct.dataset import resolve_method

        resolved[c] = resolve_method("auto", bands, model, warn=False)[0]
        pairs = setting_pairs(cube, min_clear=a.min_clear, max_targets=a.max_targets, sources=a.sources,
                              window_days=a.window_days)
        for t, s, frac in pairs:
            _, _, res = score_setting(cube, t, s, methods, window_days=a.window_days)
            if not res["metrics"]:
                continue
            n_dates = int(np.sum(np.abs((cube.time.values - cube.time.values[t]) / np.timedelta64(1, "D"))
                                 <= a.window_days))
            settings.append(Setting(c, str(cube.time.values[t])[:10], str(cube.time.values[s])[:10], frac,
                                    res["metrics"], res["scored_fraction"], n_dates, res["coverage"],
                                    res["methods_used"]))
            m = res["metrics"]
            print(f"  {settings[-1].target} <- {settings[-1].source} ({n_dates} dates): default "
                  f"{m['default']['psnr']:.2f} [{res['methods_used']['default']}] best comp "
                  f"{max(v['psnr'] for k, v in m.items() if k not in ('default', 'model', 'terramind')):.2f}"
                  + (f" model {m['model']['psnr']:.2f}" if "model" in m else ""), file=sys.stderr, flush=True)
        print(f"{c}: {len(bands)} bands, {cube.sizes['time']} dates, {len({t for t, _, _ in pairs})} targets, "
              f"default = {resolved[c]}, {sum(s.collection == c for s in settings)} settings", file=sys.stderr)
    summary = summarize_settings(settings, model="default")
    if not a.no_model_row:
        extra_model = {"model_only_summary": summarize_settings(settings, model="model")}
    else:
        extra_model = {}
    test = summarize_settings([s for s in settings if s.collection == TEST_COLLECTION], model="default") \
        if any(s.collection == TEST_COLLECTION for s in settings) else None
    extra = {}
    if a.terramind:  # the TerraMind path against the same bar (and against the default model)
        tm = Path(a.terramind).resolve()
        extra["terramind"] = str(tm.relative_to(ROOT)) if tm.is_relative_to(ROOT) else a.terramind
        extra["terramind_summary"] = summarize_settings(settings, model="terramind")
        t_set = [s for s in settings if s.collection == TEST_COLLECTION]
        extra["terramind_test_summary"] = summarize_settings(t_set, model="terramind") if t_set else None
        d = [s.scores["terramind"]["psnr"] - s.scores["default"]["psnr"] for s in t_set]
        from cloudfree.evaluate.pasted import _mean_se

        extra["terramind_minus_default_psnr_test"] = _mean_se(d)
    line = {"benchmark": "real_quality", "data": f"real ({Path(a.catalog).parent.name}: {a.catalog})", "machine": _machine(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "model": a.model or "shipped default", "scored_with": scored_with, "default_resolves_to": resolved, "test_collection": TEST_COLLECTION,
            "n_settings": len(settings), "seconds": round(time.time() - t0, 1), "summary": summary, "test_summary": test,
            **extra, **extra_model,
            "settings": [s.__dict__ for s in settings]}
    return emit(line, a.out)


if __name__ == "__main__":
    main()
