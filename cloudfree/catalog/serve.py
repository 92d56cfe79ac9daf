"""Serve local STAC files (JSON / NDJSON / stac-geoparquet) as a real STAC API on loopback.

Uses ``rustac serve`` (in-memory backend), so local data goes through the same pystac-client
search as Earth Search or Planetary Computer.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["serve_stac"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rustac() -> str:
    exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
    if not Path(exe).exists():
        raise RuntimeError("the 'rustac' command is missing: pip install rustac")
    return exe


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the run that started it dies, even by SIGKILL."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def serve_stac(*hrefs: str | Path, timeout: float = 30.0) -> Iterator[str]:
    """Start ``rustac serve`` on a free loopback port, yield its URL, stop it on exit."""
    for h in hrefs:
        if not Path(h).exists():
            raise FileNotFoundError(f"STAC file {h} does not exist")
    port = _free_port()
    cmd = [_rustac(), "serve", *map(str, hrefs), "--create-collections", "--addr", f"127.0.0.1:{port}"]
    if any(str(h).endswith(".parquet") for h in hrefs):
        cmd += ["--use-duckdb", "false"]  # DuckDB downloads an extension at start: fails offline
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rustac serve did not answer on {url} within {timeout:.0f}s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
