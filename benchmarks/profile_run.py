"""Where a run's time goes: task-seconds by task name during ``cloudfree.run`` (as the CLI runs it:
one local Dask worker with a thread per core).

    python benchmarks/profile_run.py --stac bench-out/catalog/items.json [--stream] [--native-reads]

Prints one JSON line: machine, date, commit, wall seconds, total task-seconds, the share of the
cores that tasks kept busy, and the 15 task names that took most task-seconds (SYNTHETIC data for
make_catalog's catalogs). Time outside tasks (the driver: COG writing, checks) is wall − busy.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _name(key) -> str:
    k = key[0] if isinstance(key, tuple) else str(key)
    parts = str(k).split("-")
    return "-".join(p for p in parts if not (len(p) >= 16 and all(c in "0123456789abcdef" for c in p)))[:60]


def main(argv=None) -> dict:
    from distributed import Client, LocalCluster, get_task_stream

    import cloudfree
    from pipeline import _commit, _machine, append_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stac", required=True)
    ap.add_argument("--start", default="2024-03-01")
    ap.add_argument("--end", default="2024-12-31")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--native-reads", action="store_true")
    ap.add_argument("--method", default="auto")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    with LocalCluster(n_workers=1, threads_per_worker=cores, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with get_task_stream(client) as ts:
            res = cloudfree.run(a.stac, a.start, a.end, Path(tmp) / "out", method=a.method, stream=a.stream,
                                native_reads=a.native_reads, echo=lambda s: print(s, file=sys.stderr))
        wall = time.perf_counter() - t0
    by: dict[str, float] = {}
    for t in ts.data:
        span = sum(s["stop"] - s["start"] for s in t["startstops"] if s["action"] == "compute")
        by[_name(t["key"])] = by.get(_name(t["key"]), 0.0) + span
    busy = sum(by.values())
    line = {"benchmark": "profile_run", "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "machine": _machine(),
            "data": "SYNTHETIC (benchmarks/make_catalog.py)", "stream": a.stream, "native_reads": a.native_reads,
            "method": res["method"], "wall_s": round(wall, 1), "task_s": round(busy, 1), "cores": cores,
            "cores_busy_share": round(busy / (wall * cores), 3), "tasks": len(ts.data),
            "top_task_s": {k: round(v, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:15]}}
    return append_line(line, a.out)


if __name__ == "__main__":
    main()
