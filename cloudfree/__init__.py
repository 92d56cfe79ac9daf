"""cloudfree: cloud-free Sentinel-2 imagery from image time series with deep learning.

Public API (imported lazily so light tasks, e.g. training on a GPU box, need only torch + numpy):

* ``search``, ``SearchRequest`` — STAC search (:mod:`cloudfree.catalog`)
* ``load_cube``, ``open_cube``, ``CubeSpec``, ``MaskConfig`` — the time cube (:mod:`cloudfree.cube`)
* ``build_cube`` — search → cube → Zarr (:mod:`cloudfree.cube`)
* ``build_model``, ``load_checkpoint``, ``save_checkpoint`` — models (:mod:`cloudfree.models`)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "search": "catalog", "SearchRequest": "catalog", "NoItemsFound": "catalog", "CatalogError": "catalog",
    "parse_bbox": "aoi", "parse_aoi": "aoi",
    "load_cube": "cube", "open_cube": "cube", "CubeSpec": "cube", "MaskConfig": "cube",
    "build_cube": "cube",
    "build_model": "models", "load_checkpoint": "models", "save_checkpoint": "models", "default_config": "models",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'cloudfree' has no attribute {name!r}")
