"""Where a run's thread time goes, from a py-spy raw profile of ``cloudfree run`` (every thread
of every process sampled; a sample counts once, under the first step below its stack holds):

    py-spy record --subprocesses -r 20 -f raw -o prof.txt -- python -m cloudfree.cli run ...
    python benchmarks/profile_summary.py prof.txt --rate 20 --machine "..." --commit abc1234

Prints one JSON line: thread-seconds per step (COG/asset decoding, the model, output writing,
validation, ...) and their shares of all sampled thread time.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json

STEPS = (  # first match wins: more specific steps first
    ("validation (examples, candidates, fit)", ("selfcheck.py",)),
    ("asset reads and decode (rasterio windows)", ("_read_window", "read_box", "odc/loader", "rasterio")),
    ("enlarging coarse bands, masks", ("enlarge", "_usable", "_stored_bands", "_widened")),
    ("the model (forward, features, departure)", ("pixels_on_device", "pixels_numpy", "forward")),
    ("block task: gather, upload, download", ("_predict", "predict_from_reads", "gather")),
    ("output writing (Zarr, COG, PNG, STAC)", ("_write", "write_cog", "zarr")),
    ("Dask scheduling and transfers", ("distributed", "dask/")),
)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--wall-s", type=float, default=None, help="the run's wall time, for the mean threads busy")
    a = ap.parse_args(argv)
    spent: collections.Counter = collections.Counter()
    for line in open(a.profile):
        stack, n = line.rstrip("\n").rsplit(" ", 1)
        step = next((name for name, keys in STEPS if any(k in stack for k in keys)), "other")
        spent[step] += int(n) / a.rate
    total = sum(spent.values())
    out = {"benchmark": "profile_summary", "label": a.label, "machine": a.machine, "commit": a.commit,
           "date": dt.date.today().isoformat(), "thread_s_total": round(total, 1),
           "mean_threads_busy": round(total / a.wall_s, 1) if a.wall_s else None,
           "steps": {k: {"thread_s": round(v, 1), "share": round(v / total, 3)} for k, v in spent.most_common()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
