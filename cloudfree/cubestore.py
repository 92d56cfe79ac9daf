"""Search → cube → Zarr: build (or reuse, or resume) the cube store for one request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .cube import CubeSpec, load_cube, open_cube
from .stac import SearchRequest, search
from .store import store_state, write_by_regions

__all__ = ["CubeResult", "build_cube", "CUBE_ENCODING"]

CUBE_ENCODING = {
    # Reflectance as uint16 on disk (0 = nodata), like L2A itself: (DN * 1e-4) - 0.1 covers [-0.1, 6.4].
    "reflectance": {"dtype": "uint16", "scale_factor": np.float32(1e-4), "add_offset": np.float32(-0.1), "_FillValue": 0},
}


@dataclass(frozen=True)
class CubeResult:
    path: Path
    status: str
    """``written``, ``resumed`` or ``reused``."""
    n_items: int
    shape: dict


def build_cube(stac_url: str, request: SearchRequest, spec: CubeSpec, out: str | Path, *, progress=None,
               patch_url=None, stop_after: int | None = None) -> CubeResult:
    """Write the cube for ``request`` to ``out`` (Zarr v3), reusing a complete store for the same request."""
    out = Path(out)
    fingerprint = {"stac": stac_url if not stac_url.startswith("http://127.0.0.1") else "local",
                   "request": request.to_dict(), "cube": spec.to_dict()}
    if store_state(out, fingerprint) == "complete":
        ds = open_cube(out)
        return CubeResult(out, "reused", len(ds.time), dict(ds.sizes))
    items = search(stac_url, request)
    ds = load_cube(items, request.aoi, spec, patch_url=patch_url)
    refl = ds["reflectance"].clip(-0.1, 6.4)
    ds["reflectance"] = refl.where(ds["reflectance"].notnull())
    ds = ds.chunk({"time": 1, "band": -1, "y": spec.chunk, "x": spec.chunk})
    status = write_by_regions(ds, out, fingerprint, encoding=CUBE_ENCODING, on_region=progress, stop_after=stop_after)
    return CubeResult(out, status, len(items), dict(ds.sizes))
