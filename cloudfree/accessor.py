"""``ds.cloudfree``: the library API on xarray objects, in the odc-geo/rioxarray accessor style."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

__all__ = ["CloudfreeAccessor"]


@xr.register_dataset_accessor("cloudfree")
class CloudfreeAccessor:
    """``cube.cloudfree.reconstruct(...)`` → lazy images; ``images.cloudfree.write_outputs(out)``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def reconstruct(self, start: str | None = None, end: str | None = None, **kwargs) -> xr.Dataset:
        """:func:`cloudfree.reconstruct` on this cube."""
        from .reconstruct.dataset import reconstruct

        return reconstruct(self._ds, start, end, **kwargs)

    def write_outputs(self, out_dir: str | Path, **kwargs):
        """:func:`cloudfree.write_outputs` of these reconstructed images."""
        from .outputs.write import write_outputs

        return write_outputs(self._ds, out_dir, **kwargs)
