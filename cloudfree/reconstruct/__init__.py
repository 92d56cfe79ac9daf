"""Cube → one cloud-free image per period: the model over halo'd tiles, or a compositing method.

``dataset`` (the lazy xarray/Dask graph) is imported on first use, so ``composites`` and
``tiles`` stay importable with numpy + torch alone.
"""

import importlib

__all__ = ["period_images", "composite", "METHODS", "Period", "make_periods", "reconstruct"]
_WHERE = {"period_images": "images", "reconstruct": "dataset", "composite": "composites", "METHODS": "composites",
          "Period": "periods", "make_periods": "periods"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
