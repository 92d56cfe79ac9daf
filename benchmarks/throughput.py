"""Inference throughput: output megapixels per second, printed as one JSON line.

``--mode tile``: the tile function alone (numpy block in → numpy block out, model cached, batched,
bf16 autocast on GPU) on a SYNTHETIC series — what one GPU worker sustains. Needs only torch+numpy.
``--mode pipeline``: the whole lazy mosaic through a Dask LocalCluster from an in-memory cube.

    python benchmarks/throughput.py --mode tile --size 2048 --dates 12 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def synthetic_series(size: int, dates: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    from cloudfree.catalog.simulate import simulate_scene

    tile = min(size, 480)
    sc = simulate_scene(seed, tile, dates)
    reps = -(-size // tile)
    x = np.tile(sc.observed, (1, 1, reps, reps))[..., :size, :size]
    clear = np.tile(~np.isin(sc.scl, (0, 1, 3, 8, 9, 10)), (1, reps, reps))[..., :size, :size]
    return np.ascontiguousarray(x), np.ascontiguousarray(clear)


def bench_tile(args) -> dict:
    import torch

    from cloudfree.reconstruct.tiles import TileConfig, load_model_cached, predict_block, resolve_device
    from cloudfree.models.checkpoint import unet_weights

    cfg = TileConfig(patch=args.patch, overlap=args.overlap, batch=args.batch, device=args.device, amp=not args.fp32)
    x, clear = synthetic_series(args.size, args.dates)
    h = cfg.halo
    xe = np.pad(x, ((0, 0), (0, 0), (h, h), (h, h)), mode="reflect")
    ce = np.pad(clear, ((0, 0), (h, h), (h, h)), mode="reflect")
    dt = (np.arange(args.dates) - args.dates // 2).astype(np.float32) * 10
    model_path = str(args.model or unet_weights())  # the halo'd U-Net tile function
    dev = resolve_device(args.device)
    load_model_cached(model_path, dev)
    predict_block(xe[..., : 2 * h + cfg.patch, : 2 * h + cfg.patch], ce[..., : 2 * h + cfg.patch, : 2 * h + cfg.patch], dt=dt,
                  model=model_path, cfg=cfg, origin=(0, 0))
    times = []
    for _ in range(args.repeats):
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = predict_block(xe, ce, dt=dt, model=model_path, cfg=cfg, origin=(0, 0))
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    assert np.isfinite(out).all()
    best = min(times)
    return {"bench": "tile", "device": dev, "gpu": torch.cuda.get_device_name() if dev.startswith("cuda") else None,
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__, "size": args.size,
            "dates": args.dates, "patch": cfg.patch, "overlap": cfg.overlap, "batch": cfg.batch,
            "precision": "fp32" if args.fp32 else ("bf16" if dev.startswith("cuda") else "fp32"),
            "seconds": round(best, 3), "mpx_per_s": round(args.size**2 / best / 1e6, 3)}


def bench_pipeline(args) -> dict:
    import xarray as xr

    from cloudfree.bands import L2A_BANDS
    from cloudfree.cluster import ClusterConfig, dask_client
    from cloudfree.reconstruct.images import period_images
    from cloudfree.reconstruct.periods import make_periods
    from cloudfree.reconstruct.tiles import TileConfig
    from cloudfree.pipeline import default_weights

    x, clear = synthetic_series(args.size, args.dates)
    times = np.datetime64("2024-05-01") + np.arange(args.dates) * np.timedelta64(10, "D")
    cube = xr.Dataset({"reflectance": (("time", "band", "y", "x"), x), "clear": (("time", "y", "x"), clear.astype(np.uint8))},
                      coords={"time": times.astype("datetime64[ns]"), "band": list(L2A_BANDS),
                              "y": -10.0 * np.arange(args.size), "x": 10.0 * np.arange(args.size)}
                      ).chunk({"time": 1, "y": args.chunk, "x": args.chunk})
    periods = make_periods(cube.time.values, str(times[0]), str(times[-1]), None, 0, args.dates)
    tiles = TileConfig(patch=args.patch, overlap=args.overlap, batch=args.batch, device=args.device)
    with dask_client(ClusterConfig(threads_per_worker=args.threads), echo=lambda s: None):
        ds = period_images(cube, periods, model_path=str(args.model or default_weights()), tiles=tiles, chunk=args.chunk)
        t0 = time.perf_counter()
        ds["reflectance"].data.sum().compute()
        dt = time.perf_counter() - t0
    return {"bench": "pipeline", "device": args.device, "cpu": platform.processor() or platform.machine(),
            "size": args.size, "dates": args.dates, "chunk": args.chunk, "threads": args.threads, "patch": args.patch,
            "seconds": round(dt, 2), "mpx_per_s": round(args.size**2 / dt / 1e6, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["tile", "pipeline"], default="tile")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--dates", type=int, default=12)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fp32", action="store_true")
    args = ap.parse_args()
    res = bench_tile(args) if args.mode == "tile" else bench_pipeline(args)
    from real_quality import _commit, _machine

    res.update(machine=_machine(), date=time.strftime("%Y-%m-%d"), commit=_commit(), data="SYNTHETIC",
               model=str(args.model or ("default PixelTimeGate" if args.mode == "pipeline" else "unet_synthetic")))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
