"""Hand the heap that blocks' tasks freed back to the operating system.

Why: glibc keeps freed memory in its arenas for reuse, and the blocks' buffers (reads, staging,
the model's CPU tensors, compressed tiles) are of many sizes, so the process's resident memory
grows with the run, not with what it holds: glibc then holds about as much again as the heap
in use. Capping glibc with ``MALLOC_MMAP_THRESHOLD_`` or arena counts costs much more time; a
``malloc_trim`` after each block's task, and every :data:`TRIM_EVERY` seconds while tasks run,
costs nothing measurable (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from .tuning import TRIM_EVERY, IDLE_AFTER

import ctypes
import ctypes.util
import functools
import sys
import threading
import time

__all__ = ["release_heap", "TRIM_EVERY"]

_STATE = {"last": 0.0, "thread": None}
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # glibc only (not musl)
    except (OSError, AttributeError):
        return None


def release_heap() -> bool:
    """Return free heap pages of every arena to the OS now, and keep doing so every
    :data:`TRIM_EVERY` seconds until tasks stop calling this; False where the C library cannot (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    with _LOCK:
        _STATE["last"] = time.monotonic()
        thread = _STATE["thread"]
        if thread is None or not thread.is_alive():
            _STATE["thread"] = threading.Thread(target=_trim_while_busy, args=(trim,), daemon=True,
                                                name="cloudfree-heap-trim")
            _STATE["thread"].start()
    return True


def _trim_while_busy(trim) -> None:
    while True:
        time.sleep(TRIM_EVERY)
        with _LOCK:
            if time.monotonic() - _STATE["last"] > IDLE_AFTER:
                _STATE["thread"] = None
                return
        trim(0)
