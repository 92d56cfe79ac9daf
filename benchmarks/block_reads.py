"""How fast a streamed run's block reads go, alone and on many threads at once.

    python benchmarks/block_reads.py --stac bench-out/catalog/items.json [--chunk 2048] [--threads 1,4,16]

Reads every date × block of the catalog with a pool of N threads, for each N, three ways: through
:meth:`cloudfree.cube.block_reads.BlockReads.read` as a run does (``block_reads``: rasterio windows for
local files on the lattice), the same with every grid read through odc-stac (``odc_stac``), and
the same windows through a bare rasterio loop (``rasterio``). Prints one JSON line: seconds, reads, mean seconds per read and MB/s of
decoded values per setting (SYNTHETIC data for make_catalog's catalogs).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _plain(src, t: int, i: int, j: int) -> int:
    """The same windows through rasterio alone (no odc-stac): the floor for these files."""
    import rasterio
    from rasterio.windows import Window

    n = 0
    for g, grid in enumerate(src.grids):
        ey, ex = src.edges(g, 0), src.edges(g, 1)
        for it in src.days[t]:
            for name in grid.names:
                with rasterio.open(it.assets[name].get_absolute_href()) as f:
                    col = round((grid.geobox.affine.c - f.transform.c) / f.transform.a)
                    row = round((grid.geobox.affine.f - f.transform.f) / f.transform.e)
                    win = Window(col + ex[j], row + ey[i], ex[j + 1] - ex[j], ey[i + 1] - ey[i])
                    n += f.read(1, window=win, boundless=True, fill_value=0).nbytes  # boundless: edge blocks
    return n


def main(argv=None) -> dict:
    from cloudfree.catalog.search import SearchRequest, search
    from cloudfree.cube.load import CubeSpec
    from cloudfree.cube.block_reads import block_reads
    from pipeline import _commit, _machine, append_line

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stac", required=True)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--threads", default="1,4,16")
    ap.add_argument("--max-reads", type=int, default=64)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    items = search(a.stac, SearchRequest(None, "1900-01-01", "2100-01-01"))
    src = block_reads(items, None, CubeSpec(chunk=a.chunk))
    via_odc = replace(src, grids=tuple(replace(g, direct=False) for g in src.grids))
    nby, nbx = (-(-n // a.chunk) for n in src.shape)
    jobs = [(t, i, j) for i in range(nby) for j in range(nbx) for t in range(len(src.days))][: a.max_reads]
    res = {}
    for n in (int(v) for v in a.threads.split(",")):
        ways = (("block_reads", lambda k: sum(x.nbytes for x in src.read(*k))),
                ("odc_stac", lambda k: sum(x.nbytes for x in via_odc.read(*k))),
                ("rasterio", lambda k: _plain(src, *k)))
        for how, fn in ways:
            with ThreadPoolExecutor(n) as pool:
                t0 = time.perf_counter()
                nbytes = sum(pool.map(fn, jobs))
                wall = time.perf_counter() - t0
            res[f"{how}_threads{n}"] = {"s": round(wall, 2), "reads": len(jobs), "s_per_read": round(wall * n / len(jobs), 3),
                                        "decoded_mb_per_s": round(nbytes / 1e6 / wall, 1)}
    line = {"benchmark": "block_reads", "date": time.strftime("%Y-%m-%d"), "commit": _commit(), "machine": _machine(),
            "data": "SYNTHETIC (benchmarks/make_catalog.py)", "chunk": a.chunk, "shape": list(src.shape),
            "grids": src.describe(), **res}
    return append_line(line, a.out)


if __name__ == "__main__":
    main()
