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


def _time_driver_steps() -> dict[str, float]:
    """Wall seconds spent in each step the driver runs after the mosaic (COG, quicklook, Item,
    checks), summed over periods: patched in place, as a profiler would."""
    import functools

    from cloudfree.outputs import checks, write

    spent: dict[str, float] = {}

    def timed(mod, name):
        fn = getattr(mod, name)

        @functools.wraps(fn)
        def inner(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        setattr(mod, name, inner)

    for name in ("write_cog", "write_quicklook", "write_stac_item", "write_by_regions"):
        timed(write, name)
    from cloudfree.outputs.cog import CogPlan

    timed(CogPlan, "_shared_levels")  # after the mosaic: the overview levels that span regions
    timed(CogPlan, "_assemble")  # header + copy of the compressed tiles into the COG
    for name in ("check_outputs", "check_files"):
        timed(checks, name)
    return spent


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
    driver = _time_driver_steps()
    marks: dict[str, float] = {}

    def echo(line: str) -> None:
        print(line, file=sys.stderr)
        key = line.split(":")[0].split(" ")[0]
        marks.setdefault(key, round(time.perf_counter() - t0, 1))

    with LocalCluster(n_workers=1, threads_per_worker=cores, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with get_task_stream(client) as ts:
            res = cloudfree.run(a.stac, a.start, a.end, Path(tmp) / "out", method=a.method, stream=a.stream,
                                native_reads=a.native_reads, echo=echo)
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
            "echo_s_from_start": marks, "driver_steps_s": {k: round(v, 1) for k, v in driver.items()},
            "top_task_s": {k: round(v, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:15]}}
    return append_line(line, a.out)


if __name__ == "__main__":
    main()
