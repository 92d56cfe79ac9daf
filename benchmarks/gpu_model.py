"""Model-only speed of the shipped default model on one GPU (or the CPU), and its tile function.

* ``model``: the network alone on device-resident inputs (random reflectance, 10 % unusable),
  eager and ``torch.compile``d, bf16 autocast, at T = 3, 10 and 12 dates: Mpx/s, FLOPs per pixel
  (PyTorch's FLOP counter: matmuls and convolutions only) and the share of the GPU's dense bf16 peak.
* ``tile``: :func:`cloudfree.reconstruct.tiles.predict_pixels` on one 1024² block of stored uint16
  DN with its context margin, as the pipeline calls it: upload, device decode, context features,
  the model, and the download, per block.

Prints one JSON line per setting (machine, date, commit; data: SYNTHETIC random inputs).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit  # noqa: E402

PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H200": 989.0}
"""Dense bf16 tensor-core peaks from NVIDIA's data sheets (SXM H100/H200, PCIe H100)."""


def _peak(name: str) -> float | None:
    for k, v in PEAK_BF16_TFLOPS.items():
        if k in name:
            return v
    return None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device: str, min_s: float = 2.0) -> float:
    fn()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_s:
        fn()
        n += 1
    _sync(device)
    return (time.perf_counter() - t0) / n


def _flops(net, args, kwargs) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(*args, **kwargs)
    return float(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--pixels", type=int, default=1 << 19, help="pixels per model call")
    ap.add_argument("--dates", default="3,10,12")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=None, help="append the lines to this file")
    a = ap.parse_args()
    from cloudfree.models import default_weights, load_checkpoint
    from cloudfree.reconstruct.tiles import TileConfig, predict_pixels

    dev = a.device
    net, _ = load_checkpoint(default_weights(), map_location=dev)
    net = net.to(dev).eval()
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    base = {"benchmark": "gpu_model", "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "machine": name,
            "torch": torch.__version__, "data": "SYNTHETIC random inputs", "model": "default (pixel_timegate)"}
    lines = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    bands = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    n = a.pixels
    for t in [int(v) for v in a.dates.split(",")]:
        # the shape the tile function gives the model: one flat row of pixels per call
        x = (torch.rand(1, t, 12, 1, n, generator=gen) * 0.4).to(dev)
        valid = (torch.rand(1, t, 1, n, generator=gen) > 0.1).to(dev)
        dt = torch.linspace(-60, 60, t)[None].to(dev)
        aux = torch.ones(1, t, 3, 1, n, device=dev)
        kw = {"bands": bands, "aux": aux}
        flops = _flops(net, (x, valid, dt), kw) / n
        variants = [("eager", net)]
        if not a.no_compile and dev.startswith("cuda"):
            torch._dynamo.reset()
            variants.append(("compile", torch.compile(net, dynamic=False)))
        for label, fn in variants:
            def call(fn=fn):
                with torch.inference_mode(), torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=dev != "cpu"):
                    fn(x, valid, dt, **kw)
            t0 = time.perf_counter()
            try:
                call()
                _sync(dev)
            except Exception as exc:  # a compiler failure is a result too
                lines.append({**base, "what": "model", "variant": label, "dates": t, "error": str(exc)[:300]})
                continue
            first = time.perf_counter() - t0
            sec = _time(call, dev)
            mpx = n / sec / 1e6
            peak = _peak(name)
            lines.append({**base, "what": "model", "variant": label, "dates": t, "pixels_per_call": n,
                          "mpx_per_s": round(mpx, 1), "first_call_s": round(first, 2), "flops_per_px": round(flops),
                          "achieved_tflops": round(flops * mpx * 1e6 / 1e12, 2),
                          "share_of_bf16_peak": round(flops * mpx * 1e6 / 1e12 / peak, 4) if peak else None})
            print(json.dumps(lines[-1]), flush=True)
    # the tile function on one pipeline block: uint16 DN in, float32 reflectance out
    from cloudfree.models.pixel import CONTEXT

    rng = np.random.default_rng(0)
    for t, blk in ((12, 1024), (12, 2048)):
        dn = rng.integers(1000, 5000, (t, 12, blk, blk), dtype=np.uint16)
        clear = rng.random((t, blk + 2 * CONTEXT, blk + 2 * CONTEXT)) > 0.1
        dtv = np.linspace(-60, 60, t).astype(np.float32)
        for comp in ([False, True] if dev.startswith("cuda") and not a.no_compile else [False]):
            cfg = TileConfig(device=dev, compile=comp)

            def tile(cfg=cfg):
                predict_pixels(dn, clear, dt=dtv, model=default_weights(), cfg=cfg, bands=bands, margin=CONTEXT,
                               decode=(1e-4, -0.1, 0))
            sec = _time(tile, dev, 4.0)
            lines.append({**base, "what": "tile_function", "variant": "compile" if comp else "eager", "dates": t,
                          "block": blk, "input": "uint16 DN", "seconds_per_block": round(sec, 3),
                          "mpx_per_s": round(blk * blk / sec / 1e6, 2)})
            print(json.dumps(lines[-1]), flush=True)
    if a.out:
        with open(a.out, "a") as f:
            for ln in lines:
                f.write(json.dumps(ln) + "\n")


if __name__ == "__main__":
    main()
