"""What the driver holds of a streamed run's graph against the area: the layer a run keeps
(:class:`cloudfree.reconstruct.model_reads.ReadsLayer`), one panel's tasks (what a run writes out
at a time) and the whole area's tasks (what a run held before panels were made on demand).

Catalogs of SYNTHETIC items without COGs (``make_catalog(items_only=True)``), 1 to ``--tiles``
Sentinel-2 tiles square, 12 dates, 12 bands; Python allocations by ``tracemalloc``. The whole
graph is made only up to ``--whole-max-blocks`` blocks. Prints one JSON line.

    python benchmarks/graph_memory.py --chunk 256 --append benchmarks/results/graph_memory_cpu_2core.jsonl
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_catalog import make_catalog  # noqa: E402
from pipeline import append_line  # noqa: E402
from real_quality import _commit  # noqa: E402


def _traced(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    value = fn()
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return value, size, time.perf_counter() - t0


def measure(items_json: Path, chunk: int, whole_max_blocks: int) -> dict:
    from cloudfree import search
    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.block_reads import block_reads
    from cloudfree.models.checkpoint import default_weights
    from cloudfree.models.pixel import CONTEXT
    from cloudfree.reconstruct import model_reads as streamed
    from cloudfree.reconstruct.dataset import departure_reach
    from cloudfree.reconstruct.periods import make_periods
    from cloudfree.reconstruct.tiles import TileConfig
    from cloudfree.zarrstore import _culled

    items = search(str(items_json), "2024-03-01", "2024-12-31")
    src = block_reads(items, None, CubeSpec(chunk=chunk))
    times = np.array([d[0].datetime.replace(tzinfo=None) for d in src.days], dtype="datetime64[ns]")
    (period,) = make_periods(times, "2024-03-01", "2024-12-31", None, 30, 12)
    model = default_weights()
    make = lambda: streamed.model_from_reads(src, period, model, TileConfig(device="cpu"),  # noqa: E731
                                           dt=np.zeros(len(period.dates), np.float32), margin=CONTEXT,
                                           reach=departure_reach(model))
    make()  # once untraced: the imports it makes are not the graph's
    arr, layer_bytes, layer_s = _traced(make)
    layer = arr.__dask_graph__().layers[arr.name]
    t0, t1 = layer.span[(0, 0)]
    wanted = {(arr.name, 0, i, j) for i, j in layer.order[t0:t1]}
    panel, panel_bytes, panel_s = _traced(lambda: dict(_culled(arr.__dask_graph__(), wanted)))
    blocks = arr.numblocks[1] * arr.numblocks[2]
    res = {"shape": list(src.shape), "blocks": blocks, "panels": len(layer.span), "layer_mib": round(layer_bytes / 2**20, 2),
           "layer_s": round(layer_s, 2), "panel_tasks": len(panel), "panel_mib": round(panel_bytes / 2**20, 2),
           "panel_s": round(panel_s, 2)}
    del panel
    if blocks <= whole_max_blocks:
        whole, whole_bytes, whole_s = _traced(layer._all)  # every panel's tasks, as every run held them before
        res.update(whole_tasks=len(whole), whole_mib=round(whole_bytes / 2**20, 1), whole_s=round(whole_s, 2),
                   whole_kib_per_block=round(whole_bytes / blocks / 1024, 1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--tiles", default="1,4,16,100", help="areas in Sentinel-2 tiles (squares: 1, 4, 16, 100)")
    ap.add_argument("--whole-max-blocks", type=int, default=8000)
    ap.add_argument("--append", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(t) for t in a.tiles.split(",")):
            side = int(round(n ** 0.5)) * 10980
            cat = Path(tmp) / f"t{n}"
            make_catalog(cat, side, 12, items_only=True)
            rows.append({"tiles": n, **measure(cat / "items.json", a.chunk, a.whole_max_blocks)})
    append_line({"benchmark": "graph_memory", "date": time.strftime("%Y-%m-%d"), "commit": _commit(),
                 "machine": f"{os.cpu_count()} CPU cores", "data": "SYNTHETIC items (no pixels read)",
                 "chunk": a.chunk, "dates": 12, "bands": 12, "areas": rows}, a.append)


if __name__ == "__main__":
    main()
