"""COG reads into the cube: GDAL's warp of the coarse bands vs reading them on their own grid.

    python benchmarks/read_speed.py --stac bench-out/catalog/items.json [--chunk 2048] [--threads 16]

Computes the cube's stored DN (``dn``: every band, every date) and its ``clear`` mask from the
catalog with the threaded scheduler, once with ``CubeSpec(native_reads=False)`` (odc-stac warps
20 m and 60 m bands and SCL to 10 m with GDAL) and once with ``native_reads=True`` (read on their
own grid, enlarged by :mod:`cloudfree.cube.native`). Prints one JSON line
(machine, date, commit, data = SYNTHETIC for make_catalog's catalogs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def main(argv=None) -> dict:
    import dask

    import cloudfree
    from cloudfree.catalog.sources import read_static_items
    from pipeline import _commit, _machine, append_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stac", required=True)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--processes", type=int, default=0,
                    help="read with a local Dask cluster of this many worker processes (threads split among them)")
    ap.add_argument("--profile", action="store_true",
                    help="threads only: task seconds summed by task name (where the time goes)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    items = read_static_items(a.stac)
    res: dict = {}
    client = None
    if a.processes:
        from distributed import Client, LocalCluster

        client = Client(LocalCluster(n_workers=a.processes, threads_per_worker=max(1, a.threads // a.processes),
                                     processes=True, dashboard_address=None))
    for rep in range(a.repeat):
        for native in (False, True):
            key = "native" if native else "gdal_warp"
            cube = cloudfree.load_cube(items, None, chunk=a.chunk, native_reads=native)
            row = res.setdefault(key, {})
            with (dask.config.set(scheduler="threads", num_workers=a.threads) if client is None else
                  dask.config.set({})):
                t = time.perf_counter()
                cube["clear"].data.sum().compute()
                row.setdefault("clear_s", []).append(round(time.perf_counter() - t, 2))
                t = time.perf_counter()
                if a.profile and client is None and rep == a.repeat - 1:
                    from dask.diagnostics import Profiler

                    with Profiler() as prof:
                        dask.compute(cube["reflectance"].data.sum(axis=(0, 2, 3)), cube["clear"].data.sum())
                    by: dict[str, float] = {}
                    for r in prof.results:
                        name = r.key[0] if isinstance(r.key, tuple) else str(r.key)
                        name = str(name).rsplit("-", 1)[0]
                        by[name] = by.get(name, 0.0) + (r.end_time - r.start_time)
                    row["task_s"] = {k: round(v, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1])[:12]}
                    row["tasks"] = len(prof.results)
                else:
                    dask.compute(cube["reflectance"].data.sum(axis=(0, 2, 3)), cube["clear"].data.sum())
                row.setdefault("cube_s", []).append(round(time.perf_counter() - t, 2))
    shape = dict(cube.sizes)
    line = {"benchmark": "read_speed", "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "machine": _machine(),
            "data": "SYNTHETIC (benchmarks/make_catalog.py)", "shape": shape, "chunk": a.chunk, "threads": a.threads,
            "processes": a.processes,
            **{k: {m: (min(v) if isinstance(v, list) else v) for m, v in row.items()} for k, row in res.items()}}
    return append_line(line, a.out)


if __name__ == "__main__":
    main()
