"""What a ``--stac`` string names (a known API, a URL, a static file) and how static files read.

The bottom of the catalog package: :mod:`.search` searches what this resolves, :mod:`.sources`
opens it for a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pystac

from ..errors import CatalogError, InputError

__all__ = ["KNOWN_CATALOGS", "is_static_source", "source_id", "read_static_items", "local_path"]

KNOWN_CATALOGS = {
    "earth-search": "https://earth-search.aws.element84.com/v1",
    "planetary-computer": "https://planetarycomputer.microsoft.com/api/stac/v1",
}
_STATIC_SUFFIXES = {".json", ".geojson"}
_SERVED_SUFFIXES = {".ndjson", ".parquet"}


def local_path(stac: str) -> Path | None:
    if stac.startswith("file://"):
        return Path(urlparse(stac).path)
    if stac.startswith(("http://", "https://")):
        return None
    return Path(stac)


def check_source(stac: str) -> None:
    """``--stac`` names a catalog this version can read: a known name, a path, ``file://`` or an
    http(s) URL (a STAC API or a static file); anything else is an :class:`InputError` now."""
    scheme = urlparse(stac).scheme
    if stac in KNOWN_CATALOGS or stac == "demo" or len(scheme) <= 1 or scheme in ("file", "http", "https"):
        return
    raise InputError(f"--stac {stac}: the {scheme}:// scheme is not supported for catalogs; give a path, a file:// or "
                     "an http(s) URL (a STAC API, or a static catalog/item file), or "
                     f"{', '.join(KNOWN_CATALOGS)} (assets may still live on s3:// or gs://)")


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
    p = local_path(stac)
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
    path = local_path(stac)
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
        try:
            root = pystac.read_file(href)
            for parent, _children, its in root.walk():
                for it in its:
                    if it.collection_id is None and isinstance(parent, pystac.Collection):
                        it.collection_id = parent.id
                    items.append(_absolute(it.clone(), it.get_self_href() or href))
        except Exception as exc:  # a broken item or child JSON, a link to a missing file
            raise CatalogError(f"could not read the static catalog {stac}: {type(exc).__name__}: {exc} (a broken "
                               "item or child file, or a link to a missing one)") from exc
    elif kind == "FeatureCollection":
        items = [_absolute(pystac.Item.from_dict(f), href) for f in d.get("features", [])]
    elif kind == "Feature":
        items = [_absolute(pystac.Item.from_dict(d), href)]
    else:
        raise CatalogError(f"{stac} is not a STAC Catalog, Collection, ItemCollection or Item (type={kind!r})")
    if not items:
        raise CatalogError(f"{stac} holds no items")
    return items
