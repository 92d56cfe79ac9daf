"""Resolve ``--stac`` to what :func:`~cloudfree.catalog.search.search` takes: a STAC API URL (a
URL or a short name), a static catalog or item file (JSON/NDJSON: searched in this process, no
server; stac-geoparquet: served on loopback by ``rustac``, the ``parquet`` extra), or the demo.

Static catalogs and collections are walked with pystac (relative or ``file://`` hrefs, nested
children); every asset href is made absolute against the file it comes from before the items are
served, so the cube reads the right files whatever the working directory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pystac

from .search import KNOWN_CATALOGS, CatalogError
__all__ = ["open_catalog", "search_items", "DEFAULT_DEMO_DIR", "read_static_items", "is_static_source", "source_id"]

DEFAULT_DEMO_DIR = Path("cloudfree-demo")
_STATIC_SUFFIXES = {".json", ".geojson"}
_SERVED_SUFFIXES = {".ndjson", ".parquet"}


def _local_path(stac: str) -> Path | None:
    if stac.startswith("file://"):
        return Path(urlparse(stac).path)
    if stac.startswith(("http://", "https://")):
        return None
    return Path(stac)


def is_static_source(stac: str) -> bool:
    """True for a file (local, ``file://`` or http(s) ``.json``) rather than a STAC API."""
    if stac in KNOWN_CATALOGS or stac == "demo":
        return False
    suffix = Path(urlparse(stac).path).suffix.lower()
    if stac.startswith(("http://", "https://")):
        return suffix in _STATIC_SUFFIXES
    return suffix in _STATIC_SUFFIXES | _SERVED_SUFFIXES


def source_id(stac: str) -> str:
    """A stable name for a source, recorded in fingerprints (absolute path for local files)."""
    p = _local_path(stac)
    return str(p.resolve()) if p is not None and stac != "demo" and stac not in KNOWN_CATALOGS else stac


def _absolute(item: pystac.Item, base: str) -> pystac.Item:
    """Resolve every asset href of ``item`` against ``base`` (the file the item came from)."""
    for asset in item.assets.values():
        href = asset.href
        if href.startswith(("http://", "https://", "s3://", "gs://", "az://", "/vsi")):
            continue
        if href.startswith("file://"):
            asset.href = urlparse(href).path
            continue
        if base.startswith(("http://", "https://")):
            from urllib.parse import urljoin

            asset.href = urljoin(base, href)
        else:
            asset.href = str((Path(base).parent / href).resolve())
    return item


def read_static_items(stac: str) -> list[pystac.Item]:
    """Every item of a static catalog, collection, ItemCollection or single item, hrefs absolute.

    Items of a collection get its id as ``collection`` (so collection filters work as on an API).
    """
    path = _local_path(stac)
    href = str(path.resolve()) if path is not None else stac
    if path is not None and not path.exists():
        raise FileNotFoundError(f"STAC file {path} does not exist")
    if href.lower().endswith(".ndjson"):
        try:
            lines = pystac.StacIO.default().read_text(href).splitlines()
            items = [_absolute(pystac.Item.from_dict(json.loads(ln)), href) for ln in lines if ln.strip()]
        except Exception as exc:
            raise CatalogError(f"could not read STAC item file {stac}: {exc}") from exc
        if not items:
            raise CatalogError(f"{stac} holds no items")
        return items
    try:
        d = pystac.StacIO.default().read_json(href)
    except Exception as exc:
        raise CatalogError(f"could not read STAC file {stac}: {exc}") from exc
    kind = d.get("type")
    items: list[pystac.Item] = []
    if kind in ("Catalog", "Collection"):
        root = pystac.read_file(href)
        for parent, _children, its in root.walk():
            for it in its:
                if it.collection_id is None and isinstance(parent, pystac.Collection):
                    it.collection_id = parent.id
                items.append(_absolute(it.clone(), it.get_self_href() or href))
    elif kind == "FeatureCollection":
        items = [_absolute(pystac.Item.from_dict(f), href) for f in d.get("features", [])]
    elif kind == "Feature":
        items = [_absolute(pystac.Item.from_dict(d), href)]
    else:
        raise CatalogError(f"{stac} is not a STAC Catalog, Collection, ItemCollection or Item (type={kind!r})")
    if not items:
        raise CatalogError(f"{stac} holds no items")
    return items


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
        path = _local_path(stac)
        if path is not None and not path.exists():
            raise FileNotFoundError(f"STAC file {path} does not exist")
        yield str(path.resolve()) if path is not None else stac
    elif stac.startswith(("http://", "https://")):
        yield stac.rstrip("/")
    else:
        raise ValueError(f"--stac {stac!r} is neither a URL, a known catalog ({', '.join(KNOWN_CATALOGS)}, demo), "
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
        raise ValueError("give exactly one of bbox (west, south, east, north) or aoi (GeoJSON)")
    else:
        area = parse_bbox(bbox) if bbox is not None else parse_aoi(aoi)
    req = SearchRequest(area, str(start), str(end), collection, max_cloud_cover, limit)
    with open_catalog(stac) as url:
        return search(url, req, source=source_id(stac))
