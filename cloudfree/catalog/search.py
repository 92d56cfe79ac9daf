"""Search a STAC API or a static STAC file for Sentinel-2 L2A items over an AOI and a date range.

APIs (Earth Search, Planetary Computer, any URL) go through pystac-client; static catalogs,
collections and item files (the bundled and demo catalogs included) are searched in this process
with the same rules, so a GPU host or a notebook needs no server. Both end in :func:`search`.
"""

from __future__ import annotations

from ..errors import CatalogError, InputError, NoItemsFound

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pystac
import pystac_client
from pystac_client.exceptions import APIError

from ..aoi import AOI
from .locations import KNOWN_CATALOGS, is_static_source, read_static_items

__all__ = ["SearchRequest", "search", "search_static", "CatalogError", "NoItemsFound", "KNOWN_CATALOGS", "signer_for"]

log = logging.getLogger(__name__)



STAC_TIMEOUT = (10.0, 15.0)
"""(connect, read) seconds per STAC request (``CLOUDFREE_STAC_TIMEOUT`` overrides the read timeout):
with the retries, a server that never answers is named within a minute."""
STAC_RETRIES = 2
"""Retries per STAC request, with exponential back-off (urllib3's), for connection errors and 5xx."""
SEARCH_TIME = 180.0
"""Seconds for a whole API search, every page (``CLOUDFREE_SEARCH_TIMEOUT``): a server that trickles
bytes or pages forever is stopped, named."""
MAX_ITEMS = 20_000
"""Items one search may return (``CLOUDFREE_MAX_ITEMS``): a ``next`` link that never ends, or an
area and dates far larger than meant, stop here with a clear error."""


def _stac_io(modifier=None):
    import os

    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    read = float(os.environ.get("CLOUDFREE_STAC_TIMEOUT", STAC_TIMEOUT[1]))
    retry = Retry(total=STAC_RETRIES, backoff_factor=0.5, status_forcelist=[429, 500, 502, 503, 504],
                  allowed_methods=None)
    timeout = (min(STAC_TIMEOUT[0], read), read)
    return StacApiIO(timeout=timeout, max_retries=retry), timeout


@dataclass(frozen=True)
class SearchRequest:
    """Everything that defines a search; also stored with a cube so a re-run can be matched."""

    aoi: AOI | None
    """The area; ``None`` only for static catalogs and item files: every item, on its own grid."""
    start: str
    """Start date (inclusive), ISO 8601."""
    end: str
    """End date (inclusive), ISO 8601."""
    collection: str | None = None
    """Collection id; ``None``: ``sentinel-2-l2a`` where the catalog has it, else its only collection."""
    max_cloud_cover: float | None = None
    """Drop scenes whose ``eo:cloud_cover`` is above this (percent)."""
    limit: int | None = None
    """Stop after this many items."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:  # bad dates fail when the request is made, before any work
        _validate_dates(self.start, self.end)
        if self.max_cloud_cover is not None and not 0 <= self.max_cloud_cover <= 100:
            raise InputError(f"max cloud cover is a percentage 0-100, got {self.max_cloud_cover}")

    def describe(self) -> str:
        w, s, e, n = self.aoi.bbox if self.aoi is not None else (float("nan"),) * 4
        cc = f", eo:cloud_cover <= {self.max_cloud_cover}" if self.max_cloud_cover is not None else ""
        return f"collection={self.collection or 'default'!r}, bbox=({w:.5f}, {s:.5f}, {e:.5f}, {n:.5f}), dates {self.start}..{self.end}{cc}"

    def to_dict(self) -> dict:
        return {"bbox": list(self.aoi.bbox) if self.aoi else None, "geometry": self.aoi.geojson if self.aoi else None,
                "start": self.start, "end": self.end,
                "collection": self.collection, "max_cloud_cover": self.max_cloud_cover, "limit": self.limit}


def signer_for(url: str) -> Callable | None:
    """Return the URL-signing hook a catalog needs (Planetary Computer), or ``None``.

    Signing needs the optional ``planetary-computer`` package and network access at read time.
    """
    if "planetarycomputer" not in url:
        return None
    try:
        import planetary_computer  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise CatalogError("Planetary Computer assets must be signed: pip install 'cloudfree[planetary]'") from exc
    return with_retries(planetary_computer.sign_inplace, "sign Planetary Computer assets")


def with_retries(fn: Callable, what: str, attempts: int = 3, backoff: float = 1.0) -> Callable:
    """``fn`` retried ``attempts`` times with exponential back-off, then a :class:`CatalogError`
    naming what failed (token services fail transiently; a run should not die on the first blip)."""
    import functools
    import time

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        for k in range(attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if k == attempts - 1:
                    raise CatalogError(f"could not {what} after {attempts} tries: {exc}") from exc
                time.sleep(backoff * 2**k)

    return wrapped


def _validate_dates(start: str, end: str) -> None:
    import re

    import pandas as pd

    bad = InputError(f"dates must be ISO 8601 (YYYY-MM-DD): got start {start!r}, end {end!r}")
    if not all(re.match(r"^\d{4}-\d{2}-\d{2}", str(d)) for d in (start, end)):
        raise bad
    try:
        s, e = pd.Timestamp(start), pd.Timestamp(end)
    except (ValueError, TypeError):
        raise bad from None
    if pd.isna(s) or pd.isna(e):
        raise bad
    if s > e:
        raise InputError(f"the start date {start} is after the end date {end}; swap them")


def as_day(value) -> str:
    """A start or end date as ``YYYY-MM-DD`` (a time or time zone, e.g. ``2023-10-01T00:00:00Z``,
    is read in UTC and reduced to its day: periods and searches work in whole days)."""
    import re

    import pandas as pd

    bad = InputError(f"dates must be ISO 8601 (YYYY-MM-DD): got {str(value)!r}")
    if not re.match(r"^\d{4}-\d{2}-\d{2}", str(value)):
        raise bad
    try:
        t = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        raise bad from None
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    return str(t.date())


def search(url: str, request: SearchRequest, *, modifier: Callable | None = None, source: str | None = None) -> list[pystac.Item]:
    """Search ``url`` and return items sorted by time (``source``: the name users gave, for messages).

    ``url`` is a STAC API, or a static catalog, collection or item file (JSON, NDJSON), searched in
    this process with the same rules (see :func:`search_static`): no server, no subprocess.
    Scene cloud cover is filtered on the client when the server does not conform to the Query or
    Filter extension (e.g. ``rustac serve``), because such servers silently return nothing.
    """
    _validate_dates(request.start, request.end)
    if is_static_source(url) and url.lower().endswith(".parquet"):
        from .serve import serve_stac

        with serve_stac(url) as api:
            items, collection = _search_api(api, request, modifier=modifier, source=source or url)
    elif is_static_source(url):
        items, collection = search_static(url, request, source=source)
    else:
        items, collection = _search_api(url, request, modifier=modifier, source=source)
    if request.max_cloud_cover is not None:
        items = [i for i in items if i.properties.get("eo:cloud_cover", 0.0) <= request.max_cloud_cover]
    items.sort(key=lambda i: (i.datetime, i.id))
    if request.limit:
        items = items[: request.limit]
    if not items:
        raise NoItemsFound(f"no items found at {source or url} for {replace(request, collection=collection).describe()}")
    log.info("found %d items for %s", len(items), request.describe())
    return items


def _search_api(url: str, request: SearchRequest, *, modifier, source) -> tuple[list[pystac.Item], str]:
    """An API search, bounded: within :data:`SEARCH_TIME` in all (opening the API, every page) and
    :data:`MAX_ITEMS` items, so a slow, trickling or endless server ends in a named error."""
    import os

    limit = int(os.environ.get("CLOUDFREE_MAX_ITEMS", MAX_ITEMS))
    seconds = float(os.environ.get("CLOUDFREE_SEARCH_TIMEOUT", SEARCH_TIME))
    return _bounded(lambda stop: _search_pages(url, request, modifier=modifier, source=source, limit=limit, stop=stop),
                    seconds, f"the STAC search at {url} did not finish within {seconds:g} s (a slow, trickling or "
                             "endless server): narrow --bbox/--start/--end, or raise CLOUDFREE_SEARCH_TIMEOUT")


def _bounded(fn: Callable, seconds: float, message: str):
    """``fn(stop_event)`` on a helper thread; a :class:`CatalogError` with ``message`` after
    ``seconds`` (the thread is told to stop and left to die with its socket)."""
    import queue
    import threading

    box: queue.Queue = queue.Queue()
    stop = threading.Event()

    def call():
        try:
            box.put((True, fn(stop)))
        except BaseException as exc:  # handed to the caller's thread
            box.put((False, exc))

    threading.Thread(target=call, daemon=True, name="cloudfree-stac").start()
    try:
        ok, res = box.get(timeout=seconds)
    except queue.Empty:
        stop.set()
        raise CatalogError(message) from None
    if not ok:
        raise res
    return res


def _search_pages(url: str, request: SearchRequest, *, modifier, source, limit: int, stop) -> tuple[list[pystac.Item], str]:
    modifier = modifier if modifier is not None else signer_for(url)
    where = source or url
    try:
        stac_io, timeout = _stac_io()
        client = pystac_client.Client.open(url, modifier=modifier, stac_io=stac_io, timeout=timeout)  # open() resets it
    except (APIError, OSError, pystac.STACError, ValueError) as exc:
        raise CatalogError(f"could not open STAC API at {url}: {exc}") from exc
    except Exception as exc:  # requests' ConnectionError and friends
        raise CatalogError(f"could not reach STAC API at {url}: {exc}") from exc
    collections = [c.id for c in client.get_collections()] if _lists_collections(client) else None
    collection = _choose_collection(lambda c: _collection_bands(client, c), where, request.collection, collections)
    conforms = client.conforms_to("QUERY") if hasattr(client, "conforms_to") else False
    kwargs: dict = {"collections": [collection], "datetime": f"{request.start}/{request.end}"}
    if request.aoi is not None:
        geom = request.aoi.geometry
        if geom.equals(geom.envelope):
            kwargs["bbox"] = list(request.aoi.bbox)
        else:
            kwargs["intersects"] = request.aoi.geojson
    if request.max_cloud_cover is not None and conforms:
        kwargs["query"] = {"eo:cloud_cover": {"lte": request.max_cloud_cover}}
    items: list[pystac.Item] = []
    try:
        for it in client.search(**kwargs, max_items=None).items():
            items.append(it)
            if stop.is_set():
                break
            if len(items) > limit:
                raise CatalogError(f"the STAC search at {url} returned more than {limit} items (an endless next link, "
                                   "or far more area and dates than meant): narrow --bbox/--start/--end, or raise "
                                   "CLOUDFREE_MAX_ITEMS")
    except CatalogError:
        raise
    except Exception as exc:  # APIError, requests' errors
        raise CatalogError(f"STAC search failed at {url}: {exc}") from exc
    return items, collection


def _utc(value):
    import pandas as pd

    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _day_range(start: str, end: str):
    """Inclusive UTC bounds; a date-only end covers its whole day (as STAC APIs read ``a/b``)."""
    import pandas as pd

    hi = _utc(end)
    return _utc(start), (hi + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1) if len(str(end)) <= 10 else hi)


def _item_span(item: pystac.Item):
    p = item.properties
    return _utc(p.get("start_datetime") or p["datetime"]), _utc(p.get("end_datetime") or p["datetime"])


def search_static(stac: str, request: SearchRequest, *, source: str | None = None) -> tuple[list[pystac.Item], str | None]:
    """Items of a static catalog/collection/item file matching ``request`` (collection, dates,
    footprint intersecting the AOI), read with pystac in this process; ``(items, collection)``.

    Same rules as a STAC API search: an inclusive date range, the ``sentinel-2-l2a`` collection
    where the file has several and no choice was made, an unknown collection is an error that lists
    what the file holds.
    """
    from shapely.geometry import box, shape

    items = read_static_items(stac)
    collections = sorted({i.collection_id for i in items if i.collection_id})
    by_coll = {c: [i for i in items if i.collection_id == c] for c in collections}

    def bands(c):
        from ..bands import item_bands

        return ", ".join(item_bands(by_coll[c][0]))

    collection = None
    if collections:  # items without a collection id are all searched
        collection = _choose_collection(bands, source or stac, request.collection, collections)
        items = by_coll[collection]
    lo, hi = _day_range(request.start, request.end)
    items = [i for i, (t0, t1) in ((i, _item_span(i)) for i in items) if t1 >= lo and t0 <= hi]
    if request.aoi is not None:
        area = request.aoi.geometry
        items = [i for i in items if (shape(i.geometry) if i.geometry else box(*i.bbox)).intersects(area)]
    return items, collection


DEFAULT_COLLECTION = "sentinel-2-l2a"


def _choose_collection(bands_of: Callable[[str], str], url: str, wanted: str | None, collections: list[str] | None) -> str:
    """The collection to search; an unknown one is an error that lists what the catalog has."""
    if collections is None:
        return wanted or DEFAULT_COLLECTION
    if wanted is None:
        if DEFAULT_COLLECTION in collections or len(collections) != 1:
            wanted = DEFAULT_COLLECTION
        else:
            return collections[0]
    if wanted in collections:
        return wanted
    raise NoItemsFound(f"collection {wanted!r} not found at {url}; the catalog has "
                       + "; ".join(f"{c} (bands: {bands_of(c)})" for c in collections[:12])
                       + (f" and {len(collections) - 12} more" if len(collections) > 12 else "")
                       + ". Choose one with --collection.")


def _collection_bands(client, collection: str) -> str:
    """The band ids one item of ``collection`` carries (for error messages)."""
    from ..bands import item_bands

    try:
        item = next(client.search(collections=[collection], max_items=1).items(), None)
    except Exception:
        return "unknown"
    return ", ".join(item_bands(item)) if item is not None else "no items"


def _lists_collections(client: pystac_client.Client) -> bool:
    try:
        return client.conforms_to("COLLECTIONS")
    except Exception:
        return False
