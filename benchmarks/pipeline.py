"""End-to-end speed of ``cloudfree run`` as a user calls it, against the plain median composite
through the same loader and writer (``--method median``), on one catalog.

Each run starts from an empty output folder (search → cube → outputs → COGs). Sampled while it
runs: peak RSS of every process of the run (the CLI and any worker processes) and, where
``nvidia-smi`` exists, GPU utilisation every 0.5 s. Stage times come from the run's own lines
(``cube written``, ``mosaic written``). Prints one JSON line per catalog with both runs, their ratio
and output Mpx/s; ``--append FILE`` also appends it there.

    python benchmarks/make_catalog.py --size 10980 --out bench-out/catalog
    python benchmarks/pipeline.py --stac bench-out/catalog/items.json --append benchmarks/results/pipeline_h100.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_quality import _commit  # noqa: E402  (commit, honouring CLOUDFREE_COMMIT on copies without .git)


def _gpu_sampler(stop: threading.Event, samples: list) -> None:
    if not shutil.which("nvidia-smi"):
        return
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            samples.append([[float(v) for v in line.split(",")] for line in out.strip().splitlines()])
        except (subprocess.SubprocessError, ValueError):
            pass
        stop.wait(0.5)


def _rss_kinds(pid: int) -> dict:
    """RssAnon and RssFile of one process, bytes (Linux): heap and buffers against mapped files
    and libraries, which the kernel can drop."""
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(("RssAnon", "RssFile")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _rss_sampler(pid: int, stop: threading.Event, peak: dict, trace: list, kinds: dict) -> None:
    import psutil

    root = psutil.Process(pid)
    while not stop.is_set():
        total = 0
        for k, v in _rss_kinds(pid).items():
            kinds[k] = max(kinds.get(k, 0), v)
        try:
            for p in [root, *root.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                    peak[p.pid] = max(peak.get(p.pid, 0), rss)
                    total += rss
                except psutil.Error:
                    pass
        except psutil.Error:
            break
        trace.append((time.perf_counter(), total))
        stop.wait(0.25)


def run_once(args: list[str], out: Path, verbose: bool = False) -> dict:
    """One ``cloudfree run`` into an empty ``out``: wall seconds, stages, peak RSS, GPU use."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "cloudfree.cli", *(["--verbose"] if verbose else []), "run", *args, "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    stop, gpu, peak, trace, kinds = threading.Event(), [], {}, [], {}
    threads = [threading.Thread(target=_gpu_sampler, args=(stop, gpu), daemon=True),
               threading.Thread(target=_rss_sampler, args=(proc.pid, stop, peak, trace, kinds), daemon=True)]
    for t in threads:
        t.start()
    stages, tail, validation = {}, [], []
    for line in proc.stdout:
        now = round(time.perf_counter() - t0, 2)
        tail = (tail + [line.rstrip()])[-80:]
        for key in ("method:", "cube ", "output CRS", "validation ", "mosaic ", "inference device"):
            if line.startswith(key) and key.strip(": ") not in stages:
                stages[key.strip(": ")] = now
        if line.startswith("validation "):
            validation.append(line.strip())
    rc = proc.wait()
    wall = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(timeout=5)
    if rc != 0:
        raise SystemExit(f"cloudfree run failed ({rc}):\n" + "\n".join(tail))
    manifest = json.loads((out / "run.json").read_text())
    res = {"wall_s": round(wall, 2), "stages_s": stages, "validation": validation, "method": manifest["method"],
           "device": manifest.get("device"),
           "shape": manifest["shape"], "peak_rss_gib_per_process": sorted(round(v / 2**30, 2) for v in peak.values())[::-1][:8],
           # the main process's peak anonymous (heap, buffers) and file-backed (libraries, mapped files) RSS
           "peak_rss_kinds_gib_main": {k: round(v / 2**30, 2) for k, v in kinds.items()},
           # does memory level off while the run goes on over more of the area? (flat in area)
           "rss_gib_peak_by_tenth_of_wall": [round(max([r for t, r in trace if t0 + k * wall / 10 <= t < t0 + (k + 1) * wall / 10],
                                                       default=0) / 2**30, 1) for k in range(10)]}
    if gpu:
        per_gpu = list(zip(*gpu))
        res["gpu_util_mean_pct"] = [round(sum(s[0] for s in g) / len(g), 1) for g in per_gpu]
        res["gpu_busy_share"] = [round(sum(s[0] > 0 for s in g) / len(g), 3) for g in per_gpu]
        res["gpu_mem_peak_mib"] = [max(s[1] for s in g) for g in per_gpu]
    return res


def _machine() -> dict:
    import platform

    m = {"host": platform.node(), "cpus": os.cpu_count()}
    try:
        import psutil

        m["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        m["gpus"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                   text=True).stdout.strip().splitlines()
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stac", required=True, help="the catalog's items.json (benchmarks/make_catalog.py)")
    ap.add_argument("--start", default="2024-03-01")
    ap.add_argument("--end", default="2024-12-31")
    ap.add_argument("--out", type=Path, default=Path("bench-out/pipeline"))
    ap.add_argument("--append", type=Path, default=None)
    ap.add_argument("--skip-median", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--data", default="SYNTHETIC (benchmarks/make_catalog.py)", help="what the catalog holds, as recorded")
    ap.add_argument("--verbose", action="store_true", help="full tracebacks from the runs")
    a, extra = ap.parse_known_args()
    common = ["--stac", a.stac, "--start", a.start, "--end", a.end, *extra]
    spec = json.loads((Path(a.stac).parent / "spec.json").read_text()) if (Path(a.stac).parent / "spec.json").exists() else {}
    runs = {"run": run_once(common, a.out / "run", a.verbose)}
    if not a.skip_median:
        runs["median"] = run_once([*common, "--method", "median"], a.out / "median")
    px = runs["run"]["shape"]["y"] * runs["run"]["shape"]["x"]
    line = {"benchmark": "pipeline", "label": a.label, "date": time.strftime("%Y-%m-%d"), "commit": _commit(),
            "machine": _machine(), "data": a.data, "catalog": spec,
            "args": extra, "output_mpx": round(px / 1e6, 2),
            "run_mpx_per_s": round(px / 1e6 / runs["run"]["wall_s"], 3), **runs}
    if "median" in runs:
        line["ratio_run_over_median"] = round(runs["run"]["wall_s"] / runs["median"]["wall_s"], 2)
    append_line(line, a.append)


def append_line(line: dict, path) -> dict:
    """Print the result as one JSON line and append it to ``path`` (if given): the speed
    benchmarks keep every run, one line each."""
    text = json.dumps(line)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with Path(path).open("a") as f:
            f.write(text + "\n")
    return line


if __name__ == "__main__":
    main()
