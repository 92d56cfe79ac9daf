"""Evaluation protocol: hide real clear pixels of held-out dates under real cloud masks of other
dates, run the model and every baseline on exactly the same inputs, score on the hidden pixels.

The hidden pixels' true values never reach any method: the target date's input carries the
cloudy values of the mask's source date there, and its validity mask says "cloudy". Results are
reported overall and by the cloud cover of the inputs, as JSON + Markdown, with side-by-side PNGs.
"""

from __future__ import annotations

from ..errors import DataError

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..reconstruct.composites import METHODS
from .examples import Example, Series, collate, validation_examples
from .metrics import all_metrics

__all__ = ["EvalResult", "evaluate_series", "predict_example", "COVER_BINS", "write_report"]

COVER_BINS = ((0, 25), (25, 50), (50, 75), (75, 100))
METRIC_KEYS = ("ssim", "psnr", "mae", "rmse", "sam")


@dataclass
class EvalResult:
    """Per-example metrics and their summaries."""

    rows: list[dict]
    """One row per (example, method): target date, input cloud cover, metrics."""
    summary: dict
    """``{"methods": {name: {metric: mean}}, "by_cover": {bin: {name: {metric: mean}}}, ...}``"""
    examples: list[Example]
    predictions: list[dict[str, np.ndarray]]


@torch.no_grad()
def predict_example(model, ex: Example, device: str = "cpu") -> np.ndarray:
    """Model output (C, H, W) for one example's inputs (and nothing else)."""
    b = {k: torch.from_numpy(v).to(device) for k, v in collate([ex]).items() if k in ("x", "valid", "dt", "pad")}
    return model(b["x"], b["valid"], b["dt"], b["pad"])["output"][0].float().cpu().numpy()


def input_cloud_cover(ex: Example) -> float:
    """Percent of input observations that are not usable (clouds, shadows, no data, hidden)."""
    return float(100.0 * (1.0 - ex.valid.mean()))


def _bin(cover: float) -> str:
    for lo, hi in COVER_BINS:
        if lo <= cover < hi or (hi == 100 and cover == 100):
            return f"{lo}-{hi}%"
    return "n/a"


def evaluate_series(series: Series, targets: list[int], model=None, *, methods: tuple[str, ...] = tuple(METHODS),
                    max_dates: int = 12, seed: int = 1234, device: str = "cpu", dates: np.ndarray | None = None) -> EvalResult:
    """Run the protocol on one series; ``model`` None skips the model (baselines only)."""
    examples = validation_examples([series], [targets], seed=seed, max_dates=max_dates)
    if not examples:
        raise DataError("no usable held-out target: every candidate date is too cloudy or nothing could be hidden")
    labels = [str(dates[ex.target_index])[:10] if dates is not None else str(ex.target_index) for ex in examples]
    return score_examples(examples, model, methods, device, labels)


def score_examples(examples: list[Example], model=None, methods: tuple[str, ...] = tuple(METHODS),
                   device: str = "cpu", labels: list[str] | None = None) -> EvalResult:
    """Score ready-made examples (e.g. SEN12MS-CR-TS least-cloudy targets) for the model and baselines."""
    rows, preds = [], []
    for i, ex in enumerate(examples):
        out: dict[str, np.ndarray] = {}
        if model is not None:
            out["model"] = predict_example(model, ex, device)
        for m in methods:
            out[m] = METHODS[m](ex.x, ex.valid, ex.dt, 0.0)
        preds.append(out)
        cover = input_cloud_cover(ex)
        for name, img in out.items():
            rows.append({"target": labels[i] if labels else str(i), "input_cloud_cover": round(cover, 1),
                         "cover_bin": _bin(cover), "hidden_pixels": int(ex.hidden.sum()), "method": name,
                         **{k: v for k, v in all_metrics(img, ex.target, ex.hidden).items() if k in METRIC_KEYS + ("mse",)}})
    return EvalResult(rows, summarize(rows), examples, preds)


def evaluate_examples_list(root, model=None, *, max_patches: int = 32, n_inputs: int = 3, device: str = "cpu") -> EvalResult:
    """SEN12MS-CR-TS test split with the data set's own protocol (least-cloudy date as target)."""
    from .sen12mscrts import find_patches, least_cloudy_example, read_patch

    patches = find_patches(root, "test")[:max_patches]
    exs = [least_cloudy_example(read_patch(p), n_inputs) for p in patches]
    return score_examples(exs, model, device=device, labels=[f"{p.roiset}/{p.roi}/{p.patch}" for p in patches])


def merge_results(results: list[EvalResult]) -> EvalResult:
    """One result from several (e.g. spatial windows of a large cube)."""
    rows = [r for res in results for r in res.rows]
    return EvalResult(rows, summarize(rows), [e for res in results for e in res.examples],
                      [p for res in results for p in res.predictions])


def _mean(vals: list[float]) -> float:
    v = [x for x in vals if x == x and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def summarize(rows: list[dict]) -> dict:
    names = list(dict.fromkeys(r["method"] for r in rows))
    overall = {n: {k: _mean([r[k] for r in rows if r["method"] == n]) for k in METRIC_KEYS} for n in names}
    by_cover = {}
    for lo, hi in COVER_BINS:
        b = f"{lo}-{hi}%"
        sel = [r for r in rows if r["cover_bin"] == b]
        if sel:
            by_cover[b] = {"n": len(sel) // len(names),
                           **{n: {k: _mean([r[k] for r in sel if r["method"] == n]) for k in METRIC_KEYS} for n in names}}
    baselines = [n for n in names if n != "model"]
    best = max(baselines, key=lambda n: overall[n]["ssim"]) if baselines else None
    return {"methods": overall, "by_cover": by_cover, "n_examples": len(rows) // max(1, len(names)),
            "best_baseline": best,
            "model_beats_best_baseline": ("model" in overall and best is not None
                                          and overall["model"]["ssim"] > overall[best]["ssim"]
                                          and overall["model"]["psnr"] > overall[best]["psnr"])}


def _markdown(summary: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Examples: {summary['n_examples']}; metrics on hidden clear pixels only "
             "(SSIM: Gaussian σ=1.5, data range 1.0; PSNR in dB, data range 1.0; SAM in degrees).", "",
             "| method | SSIM | PSNR | MAE | RMSE | SAM |", "|---|---|---|---|---|---|"]
    for n, m in summary["methods"].items():
        lines.append(f"| {n} | {m['ssim']:.4f} | {m['psnr']:.2f} | {m['mae']:.4f} | {m['rmse']:.4f} | {m['sam']:.2f} |")
    lines += ["", "## By cloud cover of the inputs", "", "| cover | n | method | SSIM | PSNR |", "|---|---|---|---|---|"]
    for b, d in summary["by_cover"].items():
        for n, m in d.items():
            if n != "n":
                lines.append(f"| {b} | {d['n']} | {n} | {m['ssim']:.4f} | {m['psnr']:.2f} |")
    lines += ["", f"Best baseline: {summary['best_baseline']}; model beats it on SSIM and PSNR: "
              f"{summary['model_beats_best_baseline']}"]
    return "\n".join(lines) + "\n"


def _rgb(img: np.ndarray, bands: list[str] | None = None) -> np.ndarray:
    """(H, W, 3) true colour from (C, H, W) reflectance; grey from the first band without B02-B04."""
    from ..bands import L2A_BANDS, RGB

    bands = list(bands) if bands else (list(L2A_BANDS) if img.shape[0] == 12 else [])
    idx = [bands.index(b) for b in RGB] if all(b in bands for b in RGB) else [0, 0, 0]
    return np.clip(np.nan_to_num(img[idx]) * 3.5, 0, 1).transpose(1, 2, 0) ** (1 / 1.2)


HIDDEN_COLOUR = "yellow"
ERROR_VMAX = 0.05


def _pick(res: EvalResult, n: int) -> list[int]:
    """Up to ``n`` examples spread over input cloud cover (least to most cloudy)."""
    order = sorted(range(len(res.examples)), key=lambda i: input_cloud_cover(res.examples[i]))
    if len(order) <= n:
        return order
    return [order[round(k * (len(order) - 1) / (n - 1))] for k in range(n)] if n > 1 else order[:1]


def write_quicklooks(res: EvalResult, out: Path, max_cols: int = 4, synthetic: bool = False,
                     bands: list[str] | None = None) -> list[Path]:
    """``evaluation_grid.png``: columns = up to ``max_cols`` targets (spread over cloud cover); rows =
    the target date's input (hidden pixels outlined in yellow), each method with its PSNR/SSIM on the
    hidden pixels, the truth, and the model's absolute error (colour bar in reflectance)."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the evaluation pictures need matplotlib: pip install 'cloudfree[eval]' "
                          "(or write_report(..., quicklooks=False))") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not res.examples:
        return []
    cols = _pick(res, max_cols)
    methods = list(res.predictions[0])
    err_key = "model" if "model" in methods else methods[0]
    rows = ["input"] + methods + ["truth", "error"]
    h, w = res.examples[0].target.shape[1:]
    cell = 2.4
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(cell * len(cols) * max(w / h, 0.5) + 1.2, cell * len(rows)),
                             squeeze=False, layout="constrained")
    score = {(r["target"], r["method"]): r for r in res.rows}
    n_methods = len(methods)
    im = None
    for c, i in enumerate(cols):
        ex, preds = res.examples[i], res.predictions[i]
        label = res.rows[i * n_methods]["target"]
        t0 = int(np.argmin(np.abs(ex.dt)))
        for r, kind in enumerate(rows):
            ax = axes[r, c]
            if kind == "input":
                ax.imshow(_rgb(ex.x[t0], bands))
                title = f"{label}: input ({input_cloud_cover(ex):.0f}% cloudy)"
            elif kind == "truth":
                ax.imshow(_rgb(ex.target, bands))
                title = "truth (target date)"
            elif kind == "error":
                err = np.abs(np.nan_to_num(preds[err_key]) - np.nan_to_num(ex.target)).mean(0)
                im = ax.imshow(np.where(ex.hidden, err, np.nan), cmap="magma", vmin=0, vmax=ERROR_VMAX)
                title = f"|error| of {err_key}, hidden pixels"
            else:
                ax.imshow(_rgb(preds[kind], bands))
                m = score.get((label, kind), {})
                title = f"{kind}: {m.get('psnr', float('nan')):.1f} dB, SSIM {m.get('ssim', float('nan')):.3f}"
            if kind != "error" and ex.hidden.any() and not ex.hidden.all():
                ax.contour(ex.hidden.astype(float), levels=[0.5], colors=HIDDEN_COLOUR, linewidths=0.8)
            ax.set_title(title, fontsize=7)
            ax.set_xticks([]); ax.set_yticks([])
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes[-1]), shrink=0.8, fraction=0.05)
        cb.set_label("mean |error| over bands (reflectance)", fontsize=7)
    fig.suptitle(("SYNTHETIC data — " if synthetic else "") + "cloudfree evaluation: hidden pixels outlined in "
                 f"{HIDDEN_COLOUR}; scores on hidden pixels", fontsize=9)
    path = out / "evaluation_grid.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [path]


def write_report(res: EvalResult, out: str | Path, title: str = "cloudfree evaluation", quicklooks: bool = True,
                 synthetic: bool = False, bands: list[str] | None = None) -> dict:
    """``report.json``, ``report.md`` and PNG quicklooks under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"summary": res.summary, "rows": res.rows}, indent=1, default=float))
    (out / "report.md").write_text(_markdown(res.summary, title))
    pngs = write_quicklooks(res, out, synthetic=synthetic, bands=bands) if quicklooks else []
    return {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "pngs": [str(p) for p in pngs]}
