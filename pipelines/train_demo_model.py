"""Train the default TimeGate + residual U-Net on SYNTHETIC scenes (GPU; CPU works, slowly).

Scenes are simulated on the fly with many seeds, places in the year, cadences and cloud climates
(the demo catalog's own seed, 42, is never used, so its dates are held out), 20/60 m bands blurred
as in a 10 m cube, and half of the hiding masks taken from real s2cloudless masks when
``--mask-bank`` points at ``CLM.npy`` from ``../shared/data/real-clouds-slovenia``.

    python pipelines/train_demo_model.py --out runs/default --steps 6000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cloudfree.evaluate.examples import Series, load_mask_bank, make_example
from cloudfree.catalog.simulate import native_resolution, simulate_scene
from cloudfree.models import default_config
from cloudfree.evaluate.examples import validation_examples
from cloudfree.training.trainer import TrainConfig, train

UNUSABLE = (0, 1, 3, 8, 9, 10)


def scene_series(args: tuple) -> Series:
    seed, size, n_dates, start, cadence = args
    sc = simulate_scene(seed, size, n_dates, start, cadence)
    refl = native_resolution(sc.observed)
    clear = ~np.isin(sc.scl, UNUSABLE) & np.isfinite(refl).all(1)
    return Series(refl.astype(np.float32), clear, sc.dates.astype(float))


def make_pool(n: int, size: int, seed0: int, workers: int) -> list[Series]:
    rng = np.random.default_rng(seed0)
    jobs = []
    for i in range(n):
        start = str(np.datetime64("2023-01-01") + np.timedelta64(int(rng.integers(0, 365)), "D"))
        jobs.append((seed0 + i, size, int(rng.integers(10, 37)), start, int(rng.choice([5, 5, 10, 10, 15]))))
    with ProcessPoolExecutor(workers) as ex:
        return list(ex.map(scene_series, jobs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/default")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--scenes", type=int, default=96)
    ap.add_argument("--scene-size", type=int, default=240)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--mask-bank", default="../shared/data/real-clouds-slovenia/CLM.npy")
    ap.add_argument("--device", default=None)
    ap.add_argument("--workers", type=int, default=max(0, min(12, (os.cpu_count() or 1) - 2)))
    ap.add_argument("--init", default=None, help="fine-tune from this checkpoint (new optimizer and schedule)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--export", default=None, help="also write the final model as a float16 checkpoint here")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop (checkpointed) after this long")
    args = ap.parse_args()
    t0 = time.time()
    workers = max(1, (os.cpu_count() or 2) - 1)
    pool = make_pool(args.scenes, args.scene_size, 1000, workers)
    bank = load_mask_bank(args.mask_bank) if args.mask_bank and Path(args.mask_bank).exists() else None
    print(json.dumps({"pool_scenes": len(pool), "pool_s": round(time.time() - t0, 1),
                      "mask_bank": 0 if bank is None else len(bank)}), flush=True)
    # Held-out monitoring: the demo catalog's scene (seed 42), never trained on.
    demo = scene_series((42, 300, 24, "2024-03-01", 10))
    frac = demo.clear.reshape(len(demo.days), -1).mean(1)
    targets = [int(t) for t in np.flatnonzero(frac >= 0.4)]
    val = validation_examples([demo], [targets], crop=None)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, crop=args.crop, val_every=500, ckpt_every=500, lr=args.lr,
                      num_workers=args.workers, time_limit_s=args.max_minutes * 60 if args.max_minutes else None,
                      model=default_config(unet={"width": args.width, "depth": 4, "gamma_init": 0.01}))

    def sample(rng):
        s = pool[int(rng.integers(len(pool)))]
        return make_example(s, rng, crop=cfg.crop, max_dates=cfg.max_dates, mask_bank=bank)

    if args.init:  # keep the architecture of the checkpoint being fine-tuned
        from cloudfree.models import read_config

        cfg.model = read_config(args.init)[0]
    res = train(cfg, sample, args.out, val=val, device=args.device, init=args.init)
    if args.export:
        from cloudfree.models import load_checkpoint, save_checkpoint

        model, info = load_checkpoint(Path(args.out) / "last.safetensors")
        info.pop("config", None)
        info["data"] = {"pool_scenes": len(pool), "scene_size": args.scene_size, "mask_bank": 0 if bank is None else len(bank),
                        "held_out": "demo scene seed 42 (the bundled catalog), never trained on"}
        save_checkpoint(model, cfg.model, args.export, info, half=True)
    print(json.dumps({"done_steps": res["step"], "device": res["device"], "wall_s": round(time.time() - t0, 1),
                      "final": res["history"][-1] if res["history"] else None}), flush=True)


if __name__ == "__main__":
    main()
