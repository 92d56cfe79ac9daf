"""Items → lazy ``(time, band, y, x)`` cube with masks, radiometry, and its resumable Zarr store."""

from .load import CubeSpec, MaskConfig, load_cube, open_cube
from .store import AssetReadError, CubeResult, build_cube

__all__ = ["CubeSpec", "MaskConfig", "load_cube", "open_cube", "build_cube", "CubeResult", "AssetReadError"]
