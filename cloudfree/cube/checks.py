"""The inputs checked before the first pixel is read: items and their assets' headers.

Why here: what the metadata or one header read per asset can tell must stop a run (or drop a date,
visibly) before any pixel work, not be averaged into the picture. A catalog is not trusted: an
asset may be a directory, a FIFO (which would hang a read), a device, a text file, a truncated or
re-encoded COG, or a COG whose dtype, nodata, size or grid differ from what its item declares.

Two outcomes, both named per item and asset:

* **dropped**: the date is left out, said in the console, ``run.json``, the Zarr attributes and
  the output STAC Items. An item that lacks a band or the SCL asset the other items have is
  dropped (its clouds would otherwise count as clear, or the band would vanish from every output);
  so is any item with a damaged asset under ``skip_bad_assets``.
* **an error** (:class:`~cloudfree.errors.DataError`) naming every damaged asset, with what to do.

Header reads run on threads, bounded in time (:data:`HEADER_TIMEOUT`), before the first pixel read.
What only the pixels reveal (a damaged tile inside a valid file) is caught where it is decoded.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlparse

from ..bands import L2A_BANDS, SCL, band_source, item_bands
from ..errors import DataError

__all__ = ["InputChecks", "check_inputs", "AssetHeader", "HEADER_TIMEOUT", "REMOTE_SCHEMES", "safe_text"]

HEADER_TIMEOUT = 60.0
"""Seconds for all header reads together (``CLOUDFREE_HEADER_TIMEOUT``): a server that accepts and
never answers fails here, named, instead of hanging the run."""
HEADER_GDAL_OPTIONS = {"GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_TIMEOUT": "20", "GDAL_HTTP_MAX_RETRY": "2",
                       "GDAL_HTTP_RETRY_DELAY": "1", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
"""GDAL's settings for the header reads: bounded per request, no directory listing per file."""
REMOTE_SCHEMES = ("http", "https", "s3", "gs", "az", "azure", "abfs", "abfss")
"""URL schemes GDAL reads assets from (besides local paths and ``file://``)."""


def safe_text(value, limit: int = 200) -> str:
    """``value`` on one line, fit to print or write (:func:`~cloudfree.progress.printable`, line
    breaks too) and cut at ``limit`` characters: what a catalog says goes into messages this way."""
    from ..progress import printable

    s = printable(str(value).replace("\n", "?").replace("\t", "?"))
    return s if len(s) <= limit else s[: limit - 1] + "…"


@dataclass(frozen=True)
class AssetHeader:
    """What one header read tells about an asset."""

    dtype: str
    nodata: float | None
    shape: tuple[int, int]
    transform: tuple[float, ...]
    crs: str


@dataclass
class InputChecks:
    """The outcome: the items to read, and what was left out or will be reprojected."""

    items: list
    dropped: dict[str, str] = field(default_factory=dict)
    """Item id → why it was left out."""
    reprojected: list[str] = field(default_factory=list)
    """Item ids delivered in another CRS than most items (reprojected onto the output grid)."""
    headers: dict[str, list] = field(default_factory=dict)
    """href → the header as read (part of the cube's fingerprint: a re-encoded asset is new data)."""

    def to_attrs(self) -> dict:
        return {"dropped": dict(self.dropped), "reprojected": list(self.reprojected)}

    def describe(self) -> list[str]:
        """Console lines: one per kind of degradation."""
        lines = []
        if self.dropped:
            shown = "; ".join(f"{k}: {v}" for k, v in list(self.dropped.items())[:5])
            more = f" (and {len(self.dropped) - 5} more, listed in run.json)" if len(self.dropped) > 5 else ""
            lines.append(f"warning: {len(self.dropped)} input item(s) left out: {safe_text(shown, 2000)}{more}")
        if self.reprojected:
            lines.append(f"note: {len(self.reprojected)} item(s) come in another CRS than the others and are "
                         f"reprojected onto the output grid: {safe_text(', '.join(self.reprojected[:5]), 600)}")
        return lines


def check_inputs(items: list, bands: tuple[str, ...] | None, *, skip_bad_assets: bool = False,
                 timeout: float | None = None, threads: int = 16) -> InputChecks:
    """Check ``items`` (and the assets of ``bands`` + SCL) before any pixel read.

    ``bands=None``: the bands most items have. Raises :class:`DataError` for damaged assets (unless
    ``skip_bad_assets``: those dates are dropped) and when no item is left."""
    _check_item_metadata(items)
    wanted = tuple(bands) if bands else _majority_bands(items)
    nowhere = [b for b in wanted if not any(b in item_bands(it) for it in items)]
    if nowhere:
        from ..errors import InputError

        have = sorted({b for it in items for b in item_bands(it)}, key=lambda b: (b == SCL, L2A_BANDS.index(b) if b in
                                                                                 L2A_BANDS else 99))
        cols = ", ".join(sorted({safe_text(i.collection_id or "?") for i in items}))
        raise InputError(f"collection {cols} has no band {', '.join(nowhere)}: its items have bands {', '.join(have)}. "
                         "Choose from those with --bands.")
    res = InputChecks(items=[])
    with_scl = any(SCL in item_bands(it) for it in items)
    for it in items:
        have = item_bands(it)
        lacking = [b for b in wanted if b not in have] + ([SCL] if with_scl and SCL not in have else [])
        if lacking:
            what = "the SCL asset (its clouds would count as clear)" if lacking == [SCL] else f"bands {', '.join(lacking)}"
            res.dropped[it.id] = f"lacks {what} that the other items have"
        else:
            res.items.append(it)
    if timeout is None:
        timeout = float(os.environ.get("CLOUDFREE_HEADER_TIMEOUT", HEADER_TIMEOUT))
    problems = _header_problems(res.items, wanted + ((SCL,) if with_scl else ()), res, timeout=timeout, threads=threads)
    if problems and not skip_bad_assets:
        listed = "; ".join(f"item {safe_text(i)} asset {safe_text(a)}: {p}" for i, a, p in problems[:6])
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise DataError(f"{len(problems)} input asset(s) cannot be used: {listed}{more}. Fix or remove those items, "
                        "or pass --skip-bad-assets to leave their dates out")
    bad = {}
    for i, a, p in problems:
        bad.setdefault(i, f"asset {a}: {p}")
    res.dropped.update(bad)
    res.items = [it for it in res.items if it.id not in bad]
    if not res.items:
        raise DataError(f"no usable input item is left of {len(items)}: " +
                        safe_text("; ".join(f"{k}: {v}" for k, v in list(res.dropped.items())[:5]), 2000))
    return res


def _check_item_metadata(items: list) -> None:
    """Every item has an id, a datetime and a footprint: without them it cannot be placed."""
    for it in items:
        if it.datetime is None and not it.properties.get("start_datetime"):
            raise DataError(f"item {safe_text(it.id)} has no datetime: fix it in the catalog or remove it")
        if it.geometry is None and it.bbox is None:
            raise DataError(f"item {safe_text(it.id)} has neither geometry nor bbox, so it cannot be placed: fix it in "
                            "the catalog or remove it")


def _majority_bands(items: list) -> tuple[str, ...]:
    """The L2A bands that at least half of the items have (an item lacking one is dropped, not the band)."""
    counts = Counter(b for it in items for b in item_bands(it, with_scl=False))
    return tuple(b for b in L2A_BANDS if counts[b] * 2 >= len(items))


def _header_problems(items: list, bands: tuple[str, ...], res: InputChecks, *, timeout: float,
                     threads: int) -> list[tuple[str, str, str]]:
    """``[(item id, asset key, problem)]`` from one header read per asset, on threads."""
    jobs = {}
    for it in items:
        for b in bands:
            key, _ = band_source(it.assets, b)
            jobs[(it.id, key)] = (it, key, b)
    problems: list[tuple[str, str, str]] = []
    headers: dict[tuple[str, str], AssetHeader] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(jobs))))
    try:
        futures = {pool.submit(_read_header, it.assets[key].href, _file_fields(it.assets[key])): k
                   for k, (it, key, _) in jobs.items()}
        done, pending = wait(futures, timeout=timeout)
        for f in done:
            h = f.result()
            if isinstance(h, str):
                problems.append((*futures[f], h))
            else:
                headers[futures[f]] = h
        for f in pending:
            problems.append((*futures[f], f"no answer within {timeout:g} s (CLOUDFREE_HEADER_TIMEOUT)"))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    problems += _declared_mismatches(jobs, headers)
    problems += _odd_ones(jobs, headers, res)
    res.headers = {jobs[k][0].assets[k[1]].href: [h.dtype, h.nodata, list(h.shape), list(h.transform), h.crs]
                   for k, h in headers.items()}
    return sorted(set(problems))


def _file_fields(asset) -> dict:
    """The STAC file extension's ``file:size`` and ``file:checksum`` of an asset, where declared."""
    return {k: asset.extra_fields[k] for k in ("file:size", "file:checksum") if k in asset.extra_fields}


MULTIHASH = {"12": ("sha256", 32), "13": ("sha512", 64), "11": ("sha1", 20), "d501": ("md5", 16)}
"""Multihash function codes (hex, varint) the STAC file extension's ``file:checksum`` may use."""


def _file_problem(path: str, size: int, declared: dict) -> str | None:
    """A local file whose size or content differs from what its item declares (``file:size``,
    ``file:checksum``): the only way to tell a damaged tile that still decodes. Reads the file once
    (off with ``CLOUDFREE_VERIFY_CHECKSUMS=0``); remote assets are not downloaded for it."""
    import hashlib

    if "file:size" in declared and int(declared["file:size"]) != size:
        return f"{safe_text(path)} has {size} bytes, the item declares file:size {int(declared['file:size'])}"
    want = str(declared.get("file:checksum", "")).lower()
    if not want or os.environ.get("CLOUDFREE_VERIFY_CHECKSUMS", "1") == "0":
        return None
    code = next((c for c in MULTIHASH if want.startswith(c)), None)
    if code is None:
        return None  # a hash function this check does not know: nothing is claimed
    name, n = MULTIHASH[code]
    digest = want[len(code) + 2 :]
    if len(digest) != 2 * n:
        return f"its item's file:checksum {safe_text(want)} is not a {name} multihash"
    h = hashlib.new(name)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if h.hexdigest() != digest:
        return (f"{safe_text(path)} differs from its item's file:checksum ({name}): the file is damaged or was "
                "replaced; restore it, or update the item")
    return None


def _read_header(href: str, declared: dict | None = None) -> AssetHeader | str:
    """The asset's header, or what is wrong with it (never raises); ``declared``: its ``file:*``
    fields, checked on local files."""
    u = urlparse(href)
    local = u.scheme in ("", "file") or (len(u.scheme) == 1 and os.name == "nt")
    if not local and u.scheme not in REMOTE_SCHEMES:
        return f"unsupported URL scheme {u.scheme!r} in {safe_text(href)} (use a path or {', '.join(REMOTE_SCHEMES)})"
    path = u.path if u.scheme == "file" else href
    if local:
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"{safe_text(path)} cannot be opened ({exc.strerror or exc})"
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            return f"{safe_text(path)} is {kind}, not a raster file"
        cut = _truncated(path, st.st_size) or (_file_problem(path, st.st_size, declared) if declared else None)
        if cut:
            return cut
    import rasterio

    try:
        with rasterio.Env(**HEADER_GDAL_OPTIONS), rasterio.open(path if local else href) as src:
            return AssetHeader(str(src.dtypes[0]), None if src.nodata is None else float(src.nodata),
                               (src.height, src.width), tuple(round(v, 6) for v in tuple(src.transform)[:6]),
                               src.crs.to_string() if src.crs else "")
    except Exception as exc:  # rasterio raises several kinds; each means "not a readable raster"
        return f"{safe_text(href)} is not a readable raster ({safe_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)})"


def _truncated(path: str, size: int) -> str | None:
    """A local TIFF whose tiles end beyond the file (a truncated copy or download); None if whole
    or not a TIFF (the raster open then says what it is)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            end = max((o + n for p in tif.pages for o, n in zip(p.dataoffsets, p.databytecounts)), default=0)
    except Exception:  # not a TIFF, or a header tifffile cannot walk: left to the raster open
        return None
    return f"{safe_text(path)} is truncated: its tiles end at byte {end}, the file has {size}" if end > size else None


def _declared(it, key: str) -> dict:
    """What the item declares for one asset: ``raster:bands[0]`` and ``proj:shape``/``proj:transform``
    (asset-level first, then the item's)."""
    a = it.assets[key].extra_fields
    rb = (a.get("raster:bands") or [{}])[0]
    return {"data_type": rb.get("data_type"), "nodata": rb.get("nodata"),
            "shape": a.get("proj:shape", it.properties.get("proj:shape")),
            "transform": a.get("proj:transform", it.properties.get("proj:transform"))}


def _declared_mismatches(jobs: dict, headers: dict) -> list[tuple[str, str, str]]:
    out = []
    for k, h in headers.items():
        it, key, _ = jobs[k]
        d = _declared(it, key)
        if d["data_type"] and str(d["data_type"]) != h.dtype:
            out.append((*k, f"stored as {h.dtype}, the item declares {d['data_type']}"))
        if d["nodata"] is not None and h.nodata is not None and float(d["nodata"]) != h.nodata:
            out.append((*k, f"its nodata is {h.nodata:g}, the item declares {float(d['nodata']):g}"))
        if d["shape"] and tuple(int(v) for v in d["shape"][:2]) != h.shape:
            out.append((*k, f"is {h.shape[0]} x {h.shape[1]} px, the item declares proj:shape {list(d['shape'])}"))
        if d["transform"] and any(abs(float(a) - b) > 1e-6 * max(1.0, abs(b))
                                  for a, b in zip(d["transform"][:6], h.transform)):
            out.append((*k, f"its grid {list(h.transform)} differs from the item's proj:transform "
                            f"{[float(v) for v in d['transform'][:6]]}"))
    return out


def _odd_ones(jobs: dict, headers: dict, res: InputChecks) -> list[tuple[str, str, str]]:
    """Per band, an asset whose dtype differs from most assets of that band is damaged (a
    re-encoded COG); an item in another CRS than most is reprojected, and said."""
    by_band: dict[str, Counter] = {}
    for k, h in headers.items():
        by_band.setdefault(jobs[k][2], Counter())[h.dtype] += 1
    out = []
    for k, h in headers.items():
        common, n = by_band[jobs[k][2]].most_common(1)[0]
        if h.dtype != common and n > 1:
            out.append((*k, f"stored as {h.dtype} where the band's other assets are {common}"))
    crs = Counter(h.crs for h in headers.values())
    if len(crs) > 1:
        main = crs.most_common(1)[0][0]
        res.reprojected = sorted({k[0] for k, h in headers.items() if h.crs != main})
    return out
