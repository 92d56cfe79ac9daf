"""Train the band-aware PixelTimeGate on the real series (REAL data), reproducibly.

    python pipelines/train_pixel_model.py prepare --out .carry/real      # cubes → .npz (user path)
    python benchmarks/more_real_catalog.py --out bench-out/more-real     # ../shared/data/more-real as STAC
    python pipelines/train_pixel_model.py prepare --catalog bench-out/more-real/catalog.json \
        --collections fusets_slovenia_meadow_2021,fusets_spain_field_2019 --out .carry/real
    python pipelines/train_pixel_model.py train --data .carry/real --out runs/pixel --minutes 8 \
        [--leave-out fusets_spain_field_2019]

Places: worldcereal_000028085BF08E7E is the held-out TEST collection and hls_missouri_2023 the
place kept UNTOUCHED until the final benchmark; neither is ever loaded here. Training:
worldcereal_0000280849BAC91C, gfmap_optical_cube, gfmap_l2a (L2A, 4–10 bands) and the FuseTS
Slovenian meadow and Spanish dry cropland (red and NIR, SCL's clouds delivered as gaps), with every
third clear target date of each held out for validation (checkpoint selection). ``--leave-out``
drops places for the leave-one-place-out benchmark. Only torch + numpy are needed for ``train``,
so it runs on a bare GPU host.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEST = "worldcereal_000028085BF08E7E"
UNTOUCHED = "hls_missouri_2023"
TRAIN = ["worldcereal_0000280849BAC91C", "gfmap_optical_cube", "gfmap_l2a"]
TRAIN_MORE_REAL = ["fusets_slovenia_meadow_2021", "fusets_spain_field_2019"]


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--catalog", default=str(ROOT.parent / "shared" / "data" / "real-s2-l2a" / "catalog.json"))
    p.add_argument("--collections", default=",".join(TRAIN))
    p.add_argument("--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--minutes", type=float, default=None)
    t.add_argument("--pairs", type=int, default=32)
    t.add_argument("--pixels", type=int, default=128)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--hidden", type=int, default=64)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--gap-share", type=float, default=None,
                   help="share of examples from gap series (FuseTS); default: by each series' size")
    t.add_argument("--leave-out", default="", help="comma-separated places not to train on (leave one place out)")
    t.add_argument("--synthetic", type=int, default=0, help="add this many SYNTHETIC scenes (seeds 2000+) to training")
    a = ap.parse_args(argv)
    from cloudfree.training.pixel import PixelTrainConfig, RealSeries, load_real_series, train_pixel

    if a.cmd == "prepare":
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        names = [c for c in a.collections.split(",") if c]
        if {TEST, UNTOUCHED} & set(names):
            raise SystemExit(f"{TEST} and {UNTOUCHED} are never trained on")
        for s in load_real_series(a.catalog, names):
            s.save(out / f"{s.name}.npz")
            print(s.name, s.refl.shape, f"{len(s.targets)} clear targets, {len(s.sources)} cloud sources")
        return
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    out_places = {c for c in a.leave_out.split(",") if c}
    series = [RealSeries.load(p) for p in sorted(Path(a.data).glob("*.npz")) if p.stem not in out_places]
    assert not {TEST, UNTOUCHED} & {s.name for s in series}, "the test places must never be trained on"
    print("training on", [s.name for s in series], "left out:", sorted(out_places), flush=True)
    held = {s.name: set(s.targets[1::3]) for s in series}
    val = list(series)
    if a.synthetic:
        from cloudfree.training.pixel import synthetic_series

        synth = [synthetic_series(2000 + i) for i in range(a.synthetic)]
        print(f"{len(synth)} SYNTHETIC scenes, {sum(len(s.targets) for s in synth)} clear targets", flush=True)
        series += synth
        held.update({s.name: set() for s in synth})
    cfg = PixelTrainConfig(steps=a.steps, pairs=a.pairs, pixels=a.pixels, lr=a.lr, hidden=a.hidden, seed=a.seed,
                           max_minutes=a.minutes, gap_share=a.gap_share)
    res = train_pixel(series, val, a.out, cfg, device=device,
                      train_filter=lambda s, t: t not in held[s.name], val_filter=lambda s, t: t in held[s.name])
    res["device"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    Path(a.out, "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
