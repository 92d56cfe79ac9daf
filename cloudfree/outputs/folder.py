"""The output folder as a user and an attacker see it: what a run may write, and how.

Why: ``--out`` may be shared, or a copy of someone else's folder. A symbolic link placed inside it
(``run.json`` → another run's manifest, ``cloudfree_2024-06.tif.part`` → any file) would make a run
write through the link and overwrite a file elsewhere. A run therefore refuses links inside its
folder before writing anything, writes small files to a new name and renames them over the path
(never through a link), and moves aside the files of earlier requests that its manifest does not
list, so a user globbing ``*.tif`` never mixes requests.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import OutputError

__all__ = ["refuse_links", "write_atomic", "set_aside_stale", "OUTPUT_PATTERNS"]

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
