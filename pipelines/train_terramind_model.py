"""Train the band-aware TerraMind-tiny refinement (``pixel_terramind``) on the real series (REAL data).

    python pipelines/train_pixel_model.py prepare --out .carry/real           # cubes → .npz (user path)
    python pipelines/train_terramind_model.py --data .carry/real --out runs/terramind --minutes 20

Same split as the per-pixel model: worldcereal_000028085BF08E7E is the held-out TEST collection
(never loaded here); every third clear target date of each training series is validation
(checkpoint selection). The shipped per-pixel model is frozen inside; ``--encoder-weights`` loads a
local TerraMind file (pretrained weights cannot be fetched here, so the shipped run starts random).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEST = "worldcereal_000028085BF08E7E"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pixel", default=None, help="per-pixel checkpoint inside (default: the shipped weights)")
    ap.add_argument("--encoder-weights", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    import torch

    from cloudfree.models import default_weights
    from cloudfree.training.pixel import RealSeries
    from cloudfree.training.terramind import TerraMindTrainConfig, train_terramind

    if a.threads:
        torch.set_num_threads(a.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    series = [RealSeries.load(p) for p in sorted(Path(a.data).glob("*.npz"))]
    assert TEST not in {s.name for s in series}, "the test collection must never be trained on"
    held = {s.name: set(s.targets[1::3]) for s in series}
    cfg = TerraMindTrainConfig(steps=a.steps, batch=a.batch, size=a.size, lr=a.lr, seed=a.seed, max_minutes=a.minutes)
    res = train_terramind(series, series, a.pixel or default_weights(), a.out, cfg, device=device,
                          train_filter=lambda s, t: t not in held[s.name], val_filter=lambda s, t: t in held[s.name],
                          encoder_weights=a.encoder_weights)
    res["device"] = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    Path(a.out, "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
