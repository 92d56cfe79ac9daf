"""Install size and time of cloudfree (core or an extra) into a fresh virtual environment; one JSON line.

    python benchmarks/install_size.py            # core: what `cloudfree demo` / `cloudfree run` need
    python benchmarks/install_size.py --extra dev
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
    a = ap.parse_args()
    venv = Path(tempfile.mkdtemp(prefix="cloudfree-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = venv / "bin" / "pip"
        target = f"{ROOT}[{a.extra}]" if a.extra else str(ROOT)
        t0 = time.perf_counter()
        subprocess.run([str(pip), "install", "-q", target], check=True, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        pkgs = json.loads(subprocess.check_output([str(pip), "list", "--format", "json"], stderr=subprocess.DEVNULL))
        site = next(venv.glob("lib/python*/site-packages"))
        cuda = sum(_size(p) for p in site.iterdir() if p.name.startswith(("nvidia", "triton", "cuda")))
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, cwd=ROOT).strip()
        print(json.dumps({"benchmark": "install", "extra": a.extra or "core", "seconds": round(wall, 1),
                          "packages": len(pkgs), "venv_gib": round(_size(venv) / 2**30, 2),
                          "of_which_cuda_libraries_gib": round(cuda / 2**30, 2),
                          "torch": next((p["version"] for p in pkgs if p["name"] == "torch"), None),
                          "note": "pip from this machine's local wheel cache and package registry mirror",
                          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                          "date": dt.date.today().isoformat(), "commit": commit}), flush=True)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    main()
