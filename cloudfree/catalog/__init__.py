"""Where items come from: STAC API search, static catalogs and item files, the loopback server, the demo."""

from .search import KNOWN_CATALOGS, CatalogError, NoItemsFound, SearchRequest, search
from .sources import open_catalog

__all__ = ["search", "SearchRequest", "CatalogError", "NoItemsFound", "KNOWN_CATALOGS", "open_catalog"]
