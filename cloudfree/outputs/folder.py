"""The output folder as a user and an attacker see it: what a run may write, and how.

Why: ``--out`` may be shared, or a copy of someone else's folder. A symbolic link placed inside it
(``run.json`` → another run's manifest, ``cloudfree_2024-06.tif.part`` → any file) would make a run
write through the link and overwrite a file elsewhere. A run therefore refuses links inside its
folder before writing anything, writes small files to a new name and renames them over the path
(never through a link), and moves aside the files of earlier requests that its manifest does not
list, so a user globbing ``*.tif`` never mixes requests.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..errors import OutputError

__all__ = ["refuse_links", "write_atomic", "set_aside_stale", "OUTPUT_PATTERNS", "record_files", "unchanged_files"]

RECORD = ".cloudfree-files.json"
"""Size and CRC32 of each file a run wrote besides the Zarr (which keeps its own manifest)."""

OUTPUT_PATTERNS = ("cloudfree_*.tif", "cloudfree_*.png", "cloudfree_*.stac.json")
"""The per-period files a run writes beside ``mosaic.zarr``."""


def refuse_links(out: Path) -> None:
    """Raise :class:`OutputError` if anything inside ``out`` is a symbolic link (``out`` itself may be one)."""
    if not out.exists():
        return
    for root, dirs, files in os.walk(out, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                raise OutputError(f"{p} is a symbolic link; cloudfree never writes through links inside --out (it "
                                  "could overwrite a file elsewhere): remove it, or choose another --out")


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to a new file beside ``path`` and rename it over ``path``: a reader never sees
    half a file, and a link at ``path`` is replaced, not written through."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path


def set_aside_stale(out: Path, keep: set[str]) -> list[str]:
    """Move per-period files that ``keep`` (file names) does not list into ``out/.stale/<time>/``;
    returns their names. Nothing is deleted: an earlier request's outputs stay recoverable."""
    stale = sorted({p.name for pat in OUTPUT_PATTERNS for p in out.glob(pat) if p.is_file()} - keep)
    if stale:
        dest = out / ".stale" / time.strftime("%Y%m%dT%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for name in stale:
            os.replace(out / name, dest / name)
    return stale


def _stamp(path: Path) -> list[int] | None:
    import zlib

    try:
        crc, size = 0, 0
        with open(path, "rb") as f:
            for blk in iter(lambda: f.read(1 << 24), b""):
                crc, size = zlib.crc32(blk, crc), size + len(blk)
        return [size, crc]
    except OSError:
        return None


def record_files(out: Path, paths) -> None:
    """Record size and CRC32 of ``paths`` (files in ``out``): a reuse verifies them as the Zarr's
    chunks are verified (:func:`unchanged_files`)."""
    write_atomic(out / RECORD, json.dumps({Path(p).name: _stamp(Path(p)) for p in paths}, indent=1))


def unchanged_files(out: Path, paths) -> set[str]:
    """The names among ``paths`` whose bytes still match the record (a damaged, replaced or
    unrecorded file is not among them, so it is written again)."""
    try:
        rec = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return set()
    return {Path(p).name for p in paths if rec.get(Path(p).name) is not None and rec[Path(p).name] == _stamp(Path(p))}
