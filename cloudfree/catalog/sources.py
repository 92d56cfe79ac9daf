"""Resolve ``--stac`` to what :func:`~cloudfree.catalog.search.search` takes: a STAC API URL (a
URL or a short name), a static catalog or item file (JSON/NDJSON: searched in this process, no
server; stac-geoparquet: served on loopback by ``rustac``, the ``parquet`` extra), or the demo.

Static catalogs and collections are walked with pystac (relative or ``file://`` hrefs, nested
children); every asset href is made absolute against the file it comes from before the items are
served, so the cube reads the right files whatever the working directory.
"""

from __future__ import annotations

from ..errors import InputError

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pystac

from .locations import KNOWN_CATALOGS, is_static_source, local_path, read_static_items, source_id
__all__ = ["open_catalog", "search_items", "DEFAULT_DEMO_DIR", "read_static_items", "is_static_source", "source_id"]

DEFAULT_DEMO_DIR = Path("cloudfree-demo")


@contextlib.contextmanager
def open_catalog(stac: str, demo_dir: Path = DEFAULT_DEMO_DIR) -> Iterator[str]:
    """Yield what :func:`~cloudfree.catalog.search.search` takes for ``stac``.

    ``demo`` writes (once) the SYNTHETIC demo catalog and yields its item file; static catalogs,
    collections and item files are yielded as absolute paths (JSON/NDJSON are searched in this
    process; stac-geoparquet is served by ``rustac serve`` for the duration of its search).
    """
    if stac == "demo":
        from .demo import write_demo_catalog

        yield str(write_demo_catalog(demo_dir / "catalog"))
    elif stac in KNOWN_CATALOGS:
        yield KNOWN_CATALOGS[stac]
    elif is_static_source(stac):
        path = local_path(stac)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"STAC file {path} does not exist")
        yield str(path.resolve()) if path is not None else stac
    elif stac.startswith(("http://", "https://")):
        yield stac.rstrip("/")
    else:
        raise InputError(f"--stac {stac!r} is neither a URL, a known catalog ({', '.join(KNOWN_CATALOGS)}, demo), "
                         "a static catalog/collection (catalog.json, collection.json) nor an item file "
                         "(.json/.geojson/.ndjson/.parquet)")


def search_items(stac: str, start: str, end: str, *, bbox=None, aoi=None, collection: str | None = None,
                 max_cloud_cover: float | None = None, limit: int | None = None) -> list[pystac.Item]:
    """Items over an area and dates from any source ``--stac`` takes, sorted by time (asset hrefs
    absolute, so they stay readable from any working directory).

    Give ``bbox`` (west, south, east, north in degrees, as a sequence or ``"w,s,e,n"``) or ``aoi``
    (GeoJSON dict, string or file).
    """
    from ..aoi import AOI, parse_aoi, parse_bbox
    from .search import SearchRequest, search

    if isinstance(bbox, AOI) or isinstance(aoi, AOI):
        area = bbox if isinstance(bbox, AOI) else aoi
    elif bbox is None and aoi is None and is_static_source(stac):
        area = None  # a static catalog or item file: every item, whatever its footprint
    elif (bbox is None) == (aoi is None):
        raise InputError("give exactly one of bbox (west, south, east, north) or aoi (GeoJSON)")
    else:
        area = parse_bbox(bbox) if bbox is not None else parse_aoi(aoi)
    req = SearchRequest(area, str(start), str(end), collection, max_cloud_cover, limit)
    with open_catalog(stac) as url:
        return search(url, req, source=source_id(stac))
