"""Install size and time of cloudfree (core or an extra) into a fresh virtual environment; one JSON line.

    python benchmarks/install_size.py            # core: what `cloudfree demo` / `cloudfree run` need
    python benchmarks/install_size.py --extra dev
    python benchmarks/install_size.py --demo     # then run `cloudfree demo` in that environment (REAL bundled data)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", default="", help="extra(s) to install, e.g. dev or eval,terramind")
    ap.add_argument("--from-wheel", action="store_true",
                    help="build the wheel first (not timed) and time installing it, as `pip install cloudfree` from an index")
    ap.add_argument("--demo", action="store_true", help="run `cloudfree demo` in the fresh environment and time it")
    a = ap.parse_args()
    venv = Path(tempfile.mkdtemp(prefix="cloudfree-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = venv / "bin" / "pip"
        source = str(ROOT)
        if a.from_wheel:
            wheels = venv / "wheels"
            subprocess.run([str(pip), "wheel", "-q", "--no-deps", str(ROOT), "-w", str(wheels)], check=True,
                           stderr=subprocess.DEVNULL)
            source = str(next(wheels.glob("cloudfree-*.whl")))
        target = f"{source}[{a.extra}]" if a.extra else source
        t0 = time.perf_counter()
        subprocess.run([str(pip), "install", "-q", target], check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        shutil.rmtree(venv / "wheels", ignore_errors=True)  # what was installed, not the wheel it came from
        pkgs = json.loads(subprocess.check_output([str(pip), "list", "--format", "json"], stderr=subprocess.DEVNULL))
        site = next(venv.glob("lib/python*/site-packages"))
        cuda = sum(_size(p) for p in site.iterdir() if p.name.startswith(("nvidia", "triton", "cuda")))
        demo = _demo(venv) if a.demo else None
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, cwd=ROOT).strip()
        print(json.dumps({"benchmark": "install", "extra": a.extra or "core", "seconds": round(wall, 1),
                          "from": "the built wheel (build not timed)" if a.from_wheel else "the source tree (wheel build timed)",
                          "packages": len(pkgs), "venv_gib": round(_size(venv) / 2**30, 2),
                          "of_which_cuda_libraries_gib": round(cuda / 2**30, 2),
                          "torch": next((p["version"] for p in pkgs if p["name"] == "torch"), None),
                          "demo": demo,
                          "note": "pip from this machine's local wheel cache and package registry mirror",
                          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                          "date": dt.date.today().isoformat(), "commit": commit}), flush=True)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def _demo(venv: Path) -> dict:
    """``cloudfree demo`` run by the fresh environment's own command, in an empty folder."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = subprocess.run([str(venv / "bin" / "cloudfree"), "demo", "--out", str(Path(tmp) / "out")], cwd=tmp,
                           capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cogs = sorted(p.name for p in (Path(tmp) / "out").glob("cloudfree_*.tif"))
    return {"exit": r.returncode, "seconds": round(wall, 1), "cogs": cogs,
            "data": "REAL (the bundled Sentinel-2 L2A series)", "last_line": (r.stdout + r.stderr).strip().splitlines()[-1:]}


if __name__ == "__main__":
    main()
