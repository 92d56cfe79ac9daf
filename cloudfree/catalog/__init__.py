"""Where items come from: STAC API search, static catalogs and item files, the loopback server, the
bundled real demo series and the SYNTHETIC simulator. Imported lazily, so ``simulate`` needs numpy only."""

import importlib

__all__ = ["SearchRequest", "CatalogError", "NoItemsFound", "KNOWN_CATALOGS", "open_catalog"]
_WHERE = {"SearchRequest": "search", "CatalogError": "search", "NoItemsFound": "search",
          "KNOWN_CATALOGS": "search", "open_catalog": "sources"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
