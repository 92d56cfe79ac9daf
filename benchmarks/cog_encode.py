"""Time to encode output COG tiles (predictor 2 + deflate) with zlib and ISA-L, on REAL
reflectance (the bundled Sentinel-2 L2A series, mirrored to fill 256² tiles, as ``to_dn`` writes
it). Prints one JSON line: ms per tile and bytes per tile for each codec and level.

    python benchmarks/cog_encode.py
"""

from __future__ import annotations

import json
import platform
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit  # noqa: E402


def tiles() -> list[np.ndarray]:
    import cloudfree
    from cloudfree.catalog import bundled_catalog
    from cloudfree.outputs.cog import TILE, to_dn

    items = cloudfree.search(bundled_catalog(), "2019-01-01", "2019-12-31")
    cube = cloudfree.load_cube(items, None).compute()
    out = []
    for t in range(cube.sizes["time"]):
        dn = to_dn(cube["reflectance"].isel(time=t).values.transpose(1, 2, 0))  # (y, x, band)
        reps = (-(-TILE // dn.shape[0]), -(-TILE // dn.shape[1]), 1)
        big = np.tile(dn, reps)[:TILE, :TILE]
        out.append(np.ascontiguousarray(big, "<u2"))
    return out


def main() -> None:
    from isal import isal_zlib

    ts = tiles()
    raw = []
    for tile in ts:
        delta = tile.copy()
        np.subtract(tile[:, 1:], tile[:, :-1], out=delta[:, 1:])
        raw.append(delta.tobytes())
    res = {}
    for name, mod, level in [("zlib", zlib, 1), ("zlib", zlib, 6), ("isal", isal_zlib, 1), ("isal", isal_zlib, 2)]:
        t0 = time.perf_counter()
        sizes = [len(mod.compress(b, level)) for b in raw]
        dt = time.perf_counter() - t0
        assert all(zlib.decompress(mod.compress(b, level)) == b for b in raw[:3])
        res[f"{name}_{level}"] = {"ms_per_tile": round(1000 * dt / len(raw), 2), "bytes_per_tile": int(np.mean(sizes))}
    print(json.dumps({"benchmark": "cog_encode", "data": "REAL (bundled Sentinel-2 L2A series, mirrored to 256² tiles)",
                      "tiles": len(raw), "bands": int(ts[0].shape[2]), "machine": f"{platform.machine()}, 1 thread",
                      "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "codecs": res}))


if __name__ == "__main__":
    main()
