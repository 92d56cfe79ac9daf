"""Search → cube → Zarr: build (or reuse, or resume) the cube store for one request."""

from __future__ import annotations

from ..errors import AssetReadError, CloudfreeError, OutputWriteError

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .load import CubeSpec, load_cube, open_cube
from ..catalog.search import SearchRequest, search
from ..zarrstore import store_state, write_by_regions

__all__ = ["CubeResult", "build_cube", "lazy_cube", "asset_reads", "cube_fingerprint", "CUBE_ENCODING", "AssetReadError", "OutputWriteError", "items_digest"]

from .radiometry import STORE_OFFSET, STORE_SCALE

log = logging.getLogger(__name__)


_WRITE_ERRNOS = {"ENOSPC", "EACCES", "EROFS", "EDQUOT", "EPERM"}


def _write_failure(exc: BaseException, out: Path) -> str | None:
    """The reason when ``exc`` (or what caused it) is a failure to write under ``out``."""
    import errno

    for e in _causes(exc):
        if isinstance(e, OSError) and (errno.errorcode.get(e.errno or -1) in _WRITE_ERRNOS or
                                       str(out) in str(getattr(e, "filename", "") or "")):
            return e.strerror or str(e)
    return None

CUBE_ENCODING = {
    # Reflectance as uint16 on disk (0 = nodata), like L2A itself: (DN * 1e-4) - 0.1 covers [-0.1, 6.4].
    "reflectance": {"dtype": "uint16", "scale_factor": np.float32(STORE_SCALE), "add_offset": np.float32(STORE_OFFSET),
                    "_FillValue": 0},
}


class _FailedReads(logging.Handler):
    """Collects odc-stac's messages about failed asset reads (errors, or warnings where failures are
    ignored with ``skip_bad_assets``) so errors and the run's record can name the asset."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "Failed to load" in msg:
            self.messages.append(msg.split(" due to ")[0])
        elif "Ignoring read failure" in msg:
            self.messages.append("Failed to load " + msg.split(" reading ", 1)[-1].split(" (reason")[0])


def _causes(exc: BaseException | None):
    """``exc`` and what caused it, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _chain(exc: BaseException) -> str:
    return " <- ".join(str(e) for e in _causes(exc))


@dataclass(frozen=True)
class CubeResult:
    path: Path
    status: str
    """``written``, ``resumed`` or ``reused``."""
    n_items: int
    shape: dict
    skipped: list = field(default_factory=list)
    """Asset reads replaced by nodata (``skip_bad_assets``)."""


def items_digest(items) -> str:
    """A digest of the items a cube is made from (each item's whole metadata but its links, and
    size and mtime of local asset files): a catalog edited in place never passes for the one a
    store was written from."""
    import hashlib
    import json

    h = hashlib.sha256()
    for it in items:
        # the whole item but its links: raster:bands, proj:*, eo:bands, any property that changes pixels
        d = it.to_dict(include_self_link=False, transform_hrefs=False)
        d.pop("links", None)
        h.update(json.dumps([d, sorted((k, a.href, _stamp(a.href)) for k, a in it.assets.items())], sort_keys=True,
                            default=str).encode())
    return h.hexdigest()[:16]


def _stamp(href: str):
    """Size and modification time of a local asset (a file replaced in place is new data); None for URLs."""
    import os
    from urllib.parse import urlparse

    u = urlparse(href)
    path = u.path if u.scheme == "file" else href if u.scheme == "" else None
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns] if st else None


def cube_fingerprint(source: str, items, request: SearchRequest, spec: CubeSpec, headers: dict | None = None) -> dict:
    """What a cube is made from: equal fingerprints, equal cubes (stored or streamed). ``headers``:
    the assets' headers as :func:`~cloudfree.cube.checks.check_inputs` read them (a COG re-encoded
    in place is new data)."""
    import hashlib
    import json

    from ..version import __version__

    heads = hashlib.sha256(json.dumps(headers or {}, sort_keys=True).encode()).hexdigest()[:16]
    return {"stac": source, "items": items_digest(items), "headers": heads, "request": request.to_dict(),
            # the block size changes how a cube is computed, not its values: a resume may change it
            "cube": {k: v for k, v in spec.to_dict().items() if k != "chunk"}, "cloudfree": __version__}


def lazy_cube(items, request: SearchRequest, spec: CubeSpec, *, patch_url=None, skip_bad_assets: bool = False,
              template: bool = False):
    """The cube exactly as :func:`build_cube` stores it (reflectance clipped to what the store
    encodes), lazily: what a streaming run computes its outputs from.

    ``template``: its coordinates, attributes, dtypes and chunks only, for a run whose blocks are
    read by :mod:`cloudfree.cube.block_reads`. The full cube's graph is materialised task by task by
    odc-stac (tasks and memory growing with the area and held for the whole run;
    ``benchmarks/graph_memory.py``); the template's is two lazy layers per variable, and computing any of
    its blocks raises instead of returning values that were never read."""
    if not template:
        ds = _as_stored(load_cube(items, request.aoi, spec, patch_url=patch_url, fail_on_error=not skip_bad_assets))
        return ds.chunk({"time": 1, "band": -1, "y": spec.chunk, "x": spec.chunk})
    from dataclasses import replace

    from .load import plan_geobox

    whole = max(plan_geobox(items, request.aoi, spec.resolved(items)).shape)  # one block a date: a small graph
    ds = load_cube(items, request.aoi, replace(spec, chunk=whole), patch_url=patch_url,
                   fail_on_error=not skip_bad_assets)
    return ds.copy(data={k: _unread(v, spec.chunk) for k, v in ds.data_vars.items()})


def _as_stored(ds):
    """Reflectance clipped to what the store encodes (uint16, -0.1 .. 6.4), NaN kept."""
    ds["reflectance"] = ds["reflectance"].clip(-0.1, 6.4).where(ds["reflectance"].notnull())
    return ds


def _never_read(block: np.ndarray) -> np.ndarray:
    raise RuntimeError("a block of a streamed run's cube template was computed: its pixels were never read "
                       "(cloudfree.cube.block_reads reads them per block)")


def _unread(v, chunk: int):
    """``v``'s shape, dtype and cube chunks, lazily, with no reads behind it (see :func:`lazy_cube`)."""
    import dask.array as da

    chunks = {"time": 1, "band": -1, "y": chunk, "x": chunk}
    blank = da.empty(v.shape, dtype=v.dtype, chunks=tuple(chunks.get(d, -1) for d in v.dims))
    return blank.map_blocks(_never_read, dtype=v.dtype, meta=np.empty((0,) * v.ndim, v.dtype))


@contextlib.contextmanager
def asset_reads(out: Path, doing: str):
    """Collect odc-stac's failed-read messages while ``out`` is written from assets (yields the
    collector) and turn a failure into :class:`OutputWriteError` (the store) or
    :class:`AssetReadError` (an input), each naming what failed."""
    failed = _FailedReads()
    logging.getLogger("odc").addHandler(failed)
    try:
        yield failed
    except CloudfreeError:  # already says what failed (a store of another request, a failed check)
        raise
    except Exception as exc:
        import rasterio.errors

        reason = _write_failure(exc, out)
        if reason:
            raise OutputWriteError(f"could not write {out}: {reason}. Free space or choose a writable --out; "
                                   "what was written is kept and a re-run resumes") from exc
        text = _chain(exc)
        # across Dask workers the original type can arrive as a plain Exception: match the text too
        if isinstance(exc, (rasterio.errors.RasterioError, OSError)) or "rasterio" in type(exc).__module__ or \
                "Rasterio" in text or failed.messages:
            where = "; ".join(failed.messages[:3]) or text
            raise AssetReadError(f"could not read an asset while {doing} {out}: {where}. The store is kept "
                                 "partial; fix the source or pass --skip-bad-assets to treat it as nodata.") from exc
        raise
    finally:
        logging.getLogger("odc").removeHandler(failed)


def build_cube(stac_url: str, request: SearchRequest, spec: CubeSpec, out: str | Path, *, progress=None,
               patch_url=None, stop_after: int | None = None, skip_bad_assets: bool = False,
               items: list | None = None, source: str | None = None, regions_at_once: int = 4,
               inputs=None) -> CubeResult:
    """Write the cube for ``request`` to ``out`` (Zarr v3), reusing a complete store for the same request
    and the same items (``items``: already searched; ``source``: the catalog's name for messages).

    A corrupt or unreadable asset stops the run with :class:`AssetReadError` naming it (the store
    stays partial and resumable); ``skip_bad_assets`` fills such reads with nodata instead, so the
    pixels become "not clear" rather than wrong. A region is one date × one tile; ``regions_at_once``
    of them are read together, which bounds memory whatever the area.
    """
    out = Path(out)
    if items is None:
        items = search(stac_url, request, source=source)
    if inputs is None:  # checked here unless the caller did (before any pixel read either way)
        from .checks import check_inputs

        inputs = check_inputs(items, spec.bands, skip_bad_assets=skip_bad_assets)
        for line in inputs.describe():
            log.warning(line)
    items = inputs.items
    spec = spec.resolved(items)
    fingerprint = cube_fingerprint(source or stac_url, items, request, spec, headers=inputs.headers)
    if store_state(out, fingerprint) == "complete":
        from ..zarrstore import require_unchanged

        require_unchanged(out)
        ds = open_cube(out)
        return CubeResult(out, "reused", len(ds.time), dict(ds.sizes))
    ds = lazy_cube(items, request, spec, patch_url=patch_url, skip_bad_assets=skip_bad_assets)
    with asset_reads(out, "building") as failed:
        status = write_by_regions(ds, out, fingerprint, encoding=CUBE_ENCODING, on_region=progress, stop_after=stop_after,
                                  batch=regions_at_once)
    if failed.messages:  # --skip-bad-assets: say which reads were replaced by nodata, in the store itself
        import zarr

        group = zarr.open_group(str(out), mode="r+")
        group.attrs["cloudfree:skipped_assets"] = sorted(set(failed.messages))[:1000]
        zarr.consolidate_metadata(str(out))
    return CubeResult(out, status, len(items), dict(ds.sizes), skipped=sorted(set(failed.messages)))
