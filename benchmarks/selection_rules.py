"""How well a run's self-validation picks, against the hidden truth (REAL data), from the dumps of
``benchmarks/selection_study.py``:

    python benchmarks/selection_rules.py /tmp/sel/more /tmp/sel/l2a --out benchmarks/results/selection_rules_cpu.json

Per place: the margin over the best compositing method of each setting for the model alone, the
run's rule (:func:`cloudfree.reconstruct.selfcheck._fit`), the best single candidate on all
examples, the run's rule at other margins δ (the recipe must beat the model by δ dB on both
halves; δ chosen leaving the place out) and the oracle (the truth's best single candidate); and per
candidate, how validation's gain over the model correlates with the truth's. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit, _machine, emit  # noqa: E402

C = ("model", "median", "interpolation", "mosaicking", "least_cloudy")
MODEL = (("model", 1.0),)
DELTAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)


def load(folder: str) -> list[dict]:
    out = []
    for f in sorted(glob.glob(f"{folder}/*.npz")):
        z = np.load(f)
        m = json.loads(str(z["meta"]))
        val = [({c: z[f"val{k}_{c}"] for c in m["candidates"]}, z[f"val{k}_truth"]) for k in range(m["n_val"])]
        out.append({"meta": m, "val": val, "pred": {c: z["pred_" + c] for c in C}, "truth": z["truth"]})
    return out


def psnr(p, t) -> float:
    return float(10 * np.log10(1 / max(float(np.mean((p - t) ** 2)), 1e-12)))


def apply(rec, preds):
    return sum(w * preds[n] for n, w in rec)


def margin(s, rec) -> float:
    return psnr(apply(rec, s["pred"]), s["truth"]) - max(psnr(s["pred"][c], s["truth"]) for c in C[1:])


def vmse(rec, val) -> float:
    return sum(float(np.sum((apply(rec, p) - t) ** 2)) for p, t in val) / max(sum(t.size for _, t in val), 1)


def rule_run(s, margin: float | None = None):
    """The run's own rule (:func:`cloudfree.reconstruct.selfcheck._fit`), at its margin or another."""
    from cloudfree.reconstruct.selfcheck import CLEAR_WIN_DB, _fit

    if not s["val"]:
        return MODEL
    rec = _fit(list(C), [v[0] for v in s["val"]], [v[1] for v in s["val"]], "model",
               margin=CLEAR_WIN_DB if margin is None else margin)[0]
    return rec.weights


def rule_best_on_all(s):
    if not s["val"]:
        return MODEL
    return min((((n, 1.0),) for n in C), key=lambda r: vmse(r, s["val"]))


def stats(v) -> dict:
    v = np.asarray(v)
    return {"mean": round(float(v.mean()), 3), "se": round(float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0, 3),
            "won": round(float(np.mean(v > 0)), 3), "below_0_5": int(np.sum(v < -0.5)), "worst": round(float(v.min()), 2), "n": len(v)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", nargs="+")
    ap.add_argument("--out", default=None)
    ap.add_argument("--dumps-commit", default=None, help="the commit the dumps were made at (recorded)")
    a = ap.parse_args(argv)
    sets = [s for d in a.dumps for s in load(d)]
    places = sorted({s["meta"]["collection"] for s in sets})
    of = lambda p, v: [x for x, s in zip(v, sets) if s["meta"]["collection"] == p]  # noqa: E731
    rows = {"model alone": [margin(s, MODEL) for s in sets], "the run's rule now (selfcheck._fit)": [margin(s, rule_run(s)) for s in sets],
            "best single on all examples": [margin(s, rule_best_on_all(s)) for s in sets],
            "oracle single (truth)": [max(margin(s, ((c, 1.0),)) for c in C) for s in sets]}
    clear = {d: [margin(s, rule_run(s, d)) for s in sets] for d in DELTAS}
    for d, v in clear.items():
        rows[f"clear win ≥ {d} dB" + (" (the rule before CLEAR_WIN_DB)" if d == 0 else "")] = v
    lopo, picks = [0.0] * len(sets), {}
    for p in places:  # δ that maximises the mean over the other places (each weighed the same)
        d = max(DELTAS, key=lambda d: np.mean([np.mean(of(q, clear[d])) for q in places if q != p]))
        picks[p] = d
        for i, s in enumerate(sets):
            if s["meta"]["collection"] == p:
                lopo[i] = clear[d][i]
    rows["clear win, δ left-one-place-out"] = lopo
    corr = {}
    for c in C[1:]:
        dv = [10 * np.log10(vmse(MODEL, s["val"]) / vmse(((c, 1.0),), s["val"])) for s in sets if s["val"]]
        dtr = [psnr(s["pred"][c], s["truth"]) - psnr(s["pred"]["model"], s["truth"]) for s in sets if s["val"]]
        corr[c] = {"corr": round(float(np.corrcoef(dv, dtr)[0, 1]), 2), "validation_gain_over_model_db": round(float(np.mean(dv)), 2),
                   "truth_gain_over_model_db": round(float(np.mean(dtr)), 2),
                   "same_sign": round(float(np.mean(np.sign(dv) == np.sign(dtr))), 2)}
    line = {"benchmark": "selection_rules", "data": "REAL (selection_study dumps: " + ", ".join(a.dumps) + ")",
            "dumps_commit": a.dumps_commit,
            "machine": _machine(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
            "n_settings": len(sets), "lopo_delta": picks,
            "rules": {k: {"all": stats(v), **{p: stats(of(p, v)) for p in places}} for k, v in rows.items()},
            "validation_vs_truth": corr}
    return emit(line, a.out)


if __name__ == "__main__":
    main()
