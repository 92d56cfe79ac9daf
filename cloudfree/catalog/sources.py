"""Resolve ``--stac``: an API URL, a short name, a local STAC file served on loopback, or the demo."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from .serve import is_local_catalog, serve_stac
from .search import KNOWN_CATALOGS

__all__ = ["open_catalog", "DEFAULT_DEMO_DIR"]

DEFAULT_DEMO_DIR = Path("cloudfree-demo")


@contextlib.contextmanager
def open_catalog(stac: str, demo_dir: Path = DEFAULT_DEMO_DIR) -> Iterator[str]:
    """Yield a STAC API URL for ``stac``.

    ``demo`` writes (once) and serves the SYNTHETIC demo catalog; a local ``.json``/``.ndjson``/
    ``.parquet`` file is served with ``rustac serve`` for the duration of the block.
    """
    if stac == "demo":
        from .demo import write_demo_catalog

        items = write_demo_catalog(demo_dir / "catalog")
        with serve_stac(items) as url:
            yield url
    elif stac in KNOWN_CATALOGS:
        yield KNOWN_CATALOGS[stac]
    elif is_local_catalog(stac):
        with serve_stac(stac) as url:
            yield url
    elif stac.startswith(("http://", "https://")):
        yield stac.rstrip("/")
    else:
        raise ValueError(f"--stac {stac!r} is neither a URL, a known catalog ({', '.join(KNOWN_CATALOGS)}, demo) "
                         "nor a local .json/.ndjson/.parquet file")
