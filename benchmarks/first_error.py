"""Time from the command to its error message for wrong arguments of ``cloudfree run`` (what a new
user meets first); one JSON line. Each case runs the installed ``cloudfree`` command in a fresh
process, on the bundled REAL catalog, and is repeated; the median is reported.

    python benchmarks/first_error.py --append benchmarks/results/first_error_cpu_2core.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit  # noqa: E402

CASES = {
    "a month that does not exist": ["--start", "2019-13-01"],
    "a band that does not exist": ["--bands", "B99"],
    "an unknown device": ["--device", "cudax"],
    "an unknown SCL class": ["--exclude-scl", "99"],
    "a geographic CRS": ["--crs", "EPSG:4326"],
    "lat/lon swapped bbox (searches to hint)": ["--bbox", "51.30,4.26,51.313,4.268"],
}


def main() -> None:
    from cloudfree.catalog import bundled_catalog

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--append")
    a = ap.parse_args()
    exe = shutil.which("cloudfree") or str(Path(sys.executable).parent / "cloudfree")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, wrong in CASES.items():
            args = {"--stac": bundled_catalog(), "--out": str(Path(tmp) / "o"), "--start": "2019-08-01", "--end": "2019-09-30"}
            args.update(dict(zip(wrong[::2], wrong[1::2])))
            times, code, last = [], None, ""
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                r = subprocess.run([exe, "run", *[v for kv in args.items() for v in kv]], capture_output=True, text=True, cwd=tmp)
                times.append(time.perf_counter() - t0)
                code, last = r.returncode, (r.stdout + r.stderr).strip().splitlines()[-1][:160]
            out[name] = {"seconds": round(statistics.median(times), 2), "exit": code, "message": last}
    line = json.dumps({"benchmark": "first_error", "cases": out, "data": "REAL (the bundled catalog)",
                       "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                       "commit": _commit()})
    print(line, flush=True)
    if a.append:
        with open(a.append, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
