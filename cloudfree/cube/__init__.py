"""Items → lazy ``(time, band, y, x)`` cube with masks, radiometry, and its resumable Zarr store.

Imported on first use: the request types (:mod:`.spec`) load without xarray, odc-stac or GDAL."""

import importlib

__all__ = ["CubeSpec", "MaskConfig", "load_cube", "open_cube", "build_cube", "CubeResult", "AssetReadError"]
_WHERE = {"CubeSpec": "spec", "MaskConfig": "spec", "load_cube": "load", "open_cube": "load", "build_cube": "store",
          "CubeResult": "store", "AssetReadError": "store"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
