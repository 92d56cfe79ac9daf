"""Peak memory of ``cloudfree run`` as the area grows: it must stay flat under ``--memory-limit``.

Writes (or reuses) a SYNTHETIC catalog of ``--size`` pixels, then runs ``cloudfree run`` as a user
does over AOIs of 1x, 4x and 16x the smallest area (the same dates, bands and model) and samples
the RSS of the run and of every worker process. The 1x area should hold at least one full block of
the plan (512 px at 2 GB): smaller areas only have smaller blocks. First the bundled REAL demo.
Prints one JSON line per run:

    python benchmarks/memory.py --size 2100 --memory-limit 2GB --out /tmp/cloudfree-memory [--processes]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil


def commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       cwd=Path(__file__).parent).strip()
    except Exception:
        return "unknown"


def peak_rss(cmd: list[str]) -> tuple[int, dict[int, int], float, int]:
    """(peak RSS of the main process, peak RSS per child process, wall seconds, return code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(proc.pid)
    peak_main, peaks = 0, {}
    while proc.poll() is None:
        try:
            peak_main = max(peak_main, main.memory_info().rss)
            for c in main.children(recursive=True):
                peaks[c.pid] = max(peaks.get(c.pid, 0), c.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.1)
    err = proc.stderr.read()
    if proc.returncode:
        print(err[-2000:], file=sys.stderr)
    return peak_main, peaks, time.perf_counter() - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2100, help="side of the SYNTHETIC scene in pixels (multiple of 6); "
                    "the 1x area is a quarter of its side: pick it so that 1x is at least one full block")
    ap.add_argument("--dates", type=int, default=12)
    ap.add_argument("--memory-limit", default="2GB")
    ap.add_argument("--out", type=Path, default=Path("/tmp/cloudfree-memory"))
    ap.add_argument("--processes", action="store_true", help="workers as processes (RSS per worker)")
    args = ap.parse_args()
    machine = f"{platform.node()} {os.cpu_count()} cores {psutil.virtual_memory().total / 2**30:.0f} GiB"
    demo = args.out / "demo"
    subprocess.run(["rm", "-rf", str(demo)])
    main_rss, workers, wall, rc = peak_rss([sys.executable, "-m", "cloudfree.cli", "demo", "--out", str(demo), "--device", "cpu"])
    print(json.dumps({"benchmark": "memory_demo", "data": "REAL (bundled series)", "command": "cloudfree demo",
                      "peak_rss_main_gib": round(main_rss / 2**30, 3), "wall_s": round(wall, 1), "rc": rc,
                      "machine": machine, "date": dt.date.today().isoformat(), "commit": commit()}), flush=True)
    cat = args.out / f"catalog_{args.size}" / "items.json"
    if not cat.exists():
        subprocess.run([sys.executable, "-m", "cloudfree.cli", "demo-data", "--out", str(cat.parent), "--size",
                        str(args.size), "--dates", str(args.dates)], check=True, capture_output=True)
    fc = json.loads(cat.read_text())
    w = min(f["bbox"][0] for f in fc["features"]); n = max(f["bbox"][3] for f in fc["features"])
    e = max(f["bbox"][2] for f in fc["features"]); s = min(f["bbox"][1] for f in fc["features"])
    pad = 0.002
    for factor in (1, 4, 16):
        frac = (factor / 16) ** 0.5  # 16x is the whole scene
        bbox = f"{w + pad},{n - pad - (n - s - 2 * pad) * frac},{w + pad + (e - w - 2 * pad) * frac},{n - pad}"
        out = args.out / f"run_{factor}x"
        subprocess.run(["rm", "-rf", str(out)])
        cmd = [sys.executable, "-m", "cloudfree.cli", "run", "--stac", str(cat), "--bbox", bbox, "--start", "2024-06-01",
               "--end", "2024-08-31", "--out", str(out), "--memory-limit", args.memory_limit, "--device", "cpu"]
        if args.processes:
            cmd.append("--processes")
        main_rss, workers, wall, rc = peak_rss(cmd)
        shape = json.loads((out / "run.json").read_text())["shape"] if rc == 0 else {}
        print(json.dumps({
            "benchmark": "memory", "data": "SYNTHETIC", "area_factor": factor, "pixels": shape.get("y", 0) * shape.get("x", 0),
            "shape": shape, "dates_in_catalog": args.dates, "memory_limit": args.memory_limit,
            "peak_rss_main_gib": round(main_rss / 2**30, 3),
            "peak_rss_per_worker_gib": sorted(round(v / 2**30, 3) for v in workers.values() if v > 200 * 2**20),
            "wall_s": round(wall, 1), "rc": rc, "machine": machine, "date": dt.date.today().isoformat(), "commit": commit()}),
            flush=True)


if __name__ == "__main__":
    main()
