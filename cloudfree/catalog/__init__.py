"""Where items come from: STAC API search, static catalogs and item files (searched in-process), the
bundled real demo series and the SYNTHETIC simulator. Imported lazily, so ``simulate`` needs numpy only."""

import importlib

__all__ = ["SearchRequest", "CatalogError", "NoItemsFound", "KNOWN_CATALOGS", "open_catalog", "bundled_catalog"]

BUNDLED = "worldcereal_0000280849BAC91C"


def bundled_catalog() -> str:
    """Path of the REAL Sentinel-2 L2A series shipped with cloudfree (72 dates, 64x64 px at 10 m, northern
    France/Belgium, 2018-2019; ``data/ATTRIBUTION.md``) as a static STAC ``collection.json``."""
    from importlib import resources

    return str(resources.files("cloudfree") / "catalog" / "data" / BUNDLED / "collection.json")

_WHERE = {"SearchRequest": "search", "CatalogError": "search", "NoItemsFound": "search",
          "KNOWN_CATALOGS": "locations", "open_catalog": "sources"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
