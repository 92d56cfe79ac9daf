"""cloudfree: cloud-free Sentinel-2 imagery from image time series with deep learning.

The public API — what the command line does, one call each:

* ``search(stac, start, end, bbox=... | aoi=...)`` → STAC items (APIs, static catalogs, item files)
* ``load_cube(items, aoi, bands=..., resolution=...)`` → lazy ``(time, band, y, x)`` cube with masks
* ``reconstruct(cube, start, end, method=..., model=...)`` → lazy Dataset, one image per period
* ``write_outputs(images, out_dir)`` → ``mosaic.zarr``, COGs, quicklooks, STAC Items, ``items.json``
* ``run(stac, start, end, out, bbox=...)`` → the whole job (what ``cloudfree run`` calls)
* the ``.cloudfree`` accessor: ``cube.cloudfree.reconstruct(...)``, ``images.cloudfree.write_outputs(...)``

Functions are imported lazily so light tasks (training on a GPU box) need only torch + numpy.
"""

from __future__ import annotations

import importlib

try:
    from . import accessor as _accessor  # noqa: F401  (registers ds.cloudfree)
except ModuleNotFoundError as _exc:  # a bare torch + numpy host (training, tile benchmarks)
    if _exc.name not in ("xarray", "dask", "pandas"):
        raise
from . import reconstruct as _reconstruct_package  # noqa: F401  (light: its modules load on first use)


def reconstruct(cube, start: str | None = None, end: str | None = None, **kwargs):
    """One cloud-free image per period from a cube, lazily: :func:`cloudfree.reconstruct.dataset.reconstruct`
    (every argument is documented there). Bound here without importing the graph code, so the
    command line answers a wrong argument before Dask and the reconstruction modules load; the
    name is both this function and the ``reconstruct/`` folder, whose package is imported first."""
    from .reconstruct.dataset import reconstruct as _reconstruct

    return _reconstruct(cube, start, end, **kwargs)


from .version import __version__

_EXPORTS = {
    "search": ("catalog.sources", "search_items"),
    "load_cube": ("cube.load", "load_cube"),
    "write_outputs": ("outputs.write", "write_outputs"),
    "run": ("pipeline", "run"),
}
__all__ = ["search", "load_cube", "reconstruct", "write_outputs", "run", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'cloudfree' has no attribute {name!r}")
