"""What the self-validation sees against what the hidden truth says, per real setting (REAL data).

    python benchmarks/selection_study.py --catalog ../shared/data/real-s2-l2a/catalog.json --dump /tmp/sel

The settings are those of ``benchmarks/real_quality.py`` (its ``setting_pairs``) (real clouds pasted onto truly clear
dates). For each, the run's validation examples (every candidate's values and the truth at the
hidden pixels of each example, a sample of them) and every candidate's values on the setting's
scored pixels are written to ``--dump`` (one ``.npz`` per setting), so rules for choosing or
blending candidates can be compared offline, leaving one place out, without re-running the model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from real_quality import collection_cube, setting_pairs  # noqa: E402  (the same settings)

CANDS = ("model", "median", "interpolation", "mosaicking", "least_cloudy")


def main(argv=None) -> None:
    from cloudfree.catalog.sources import read_static_items
    from cloudfree.evaluate.pasted import score_setting
    from cloudfree.reconstruct.validation import ValidationConfig

    sc = importlib.import_module("cloudfree.reconstruct.selfcheck")
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--min-clear", type=float, default=0.98)
    ap.add_argument("--max-targets", type=int, default=8)
    ap.add_argument("--sources", type=int, default=3)
    ap.add_argument("--window-days", type=int, default=45)
    ap.add_argument("--sample", type=int, default=4000)
    a = ap.parse_args(argv)
    out = Path(a.dump)
    out.mkdir(parents=True, exist_ok=True)
    seen: dict = {}
    orig_fit = sc._fit

    def fit(candidates, preds, truths, prior):
        seen["val"] = (list(candidates), preds, truths, prior)
        return orig_fit(candidates, preds, truths, prior)

    sc._fit = fit
    items = read_static_items(a.catalog)
    fixed = ValidationConfig(enabled=False)
    methods = {"default": {"method": "auto"}, **{m: {"method": m, "validation": fixed} for m in CANDS}}
    for c in sorted({i.collection_id for i in items}):
        cube = collection_cube(a.catalog, [i for i in items if i.collection_id == c])
        refl = cube["reflectance"].values
        for t, s, frac in setting_pairs(cube, min_clear=a.min_clear, max_targets=a.max_targets, sources=a.sources,
                                        window_days=a.window_days):
            seen.clear()
            hidden, preds, res = score_setting(cube, t, s, methods, window_days=a.window_days)
            if not res["metrics"]:
                continue
            truth = refl[t]
            both = hidden & np.all([np.isfinite(p).all(0) for p in preds.values()], axis=0)
            ys, xs = np.nonzero(both)
            cands, vp, vt, prior = seen.get("val", (list(CANDS), [], [], "model"))  # none: validation too thin
            rs = np.random.default_rng(1)
            arrs = {"truth": truth[:, ys, xs], **{f"pred_{m}": preds[m][:, ys, xs] for m in preds}}
            for k, (p, tr) in enumerate(zip(vp, vt)):
                n = tr.shape[1]
                sel = np.sort(rs.choice(n, min(n, a.sample), replace=False))
                arrs[f"val{k}_truth"] = tr[:, sel]
                for m in cands:
                    arrs[f"val{k}_{m}"] = p[m][:, sel]
                arrs[f"val{k}_n"] = np.array(n)
            meta = {"collection": c, "target": str(cube.time.values[t])[:10], "source": str(cube.time.values[s])[:10],
                    "cover": float(frac), "n_val": len(vp), "candidates": cands, "prior": prior,
                    "default_used": res["methods_used"].get("default"),
                    "psnr": {m: v["psnr"] for m, v in res["metrics"].items()},
                    "n_dates": int(np.sum(np.abs((cube.time.values - cube.time.values[t]) / np.timedelta64(1, "D"))
                                          <= a.window_days)), "bands": [str(b) for b in cube.band.values]}
            name = f"{c}_{meta['target']}_{meta['source']}"
            np.savez_compressed(out / f"{name}.npz", meta=json.dumps(meta), **arrs)
            print(name, json.dumps({m: round(v, 2) for m, v in meta["psnr"].items()}), flush=True)


if __name__ == "__main__":
    main()
