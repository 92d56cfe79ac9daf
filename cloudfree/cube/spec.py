"""What a cube is asked to be (bands, grid, chunk, mask): the request types, checked where they are
made. Light on purpose (no xarray, odc-stac or GDAL), so the command line answers a wrong
argument before those load; :mod:`cloudfree.cube.load` turns them into a cube."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..bands import DEFAULT_UNUSABLE_SCL, validate_bands
from ..errors import InputError

if TYPE_CHECKING:
    import pystac

__all__ = ["MaskConfig", "CubeSpec", "check_crs", "MASK_SOURCES"]

MASK_SOURCES = ("scl", "model", "both")
"""Where the clear mask comes from: SCL, the learned mask (ukis-csmask), or their union."""


@dataclass(frozen=True)
class MaskConfig:
    """Which SCL classes make an observation unusable (see :data:`DEFAULT_UNUSABLE_SCL`)."""

    cloud: tuple[int, ...] = (8, 9, 10)
    """Cloud medium/high probability and thin cirrus."""
    shadow: tuple[int, ...] = (3,)
    """Cloud shadows."""
    invalid: tuple[int, ...] = (0, 1)
    """No data, saturated/defective."""
    extra: tuple[int, ...] = ()
    """Anything else to exclude, e.g. (7, 11) for unclassified and snow, or (2,) for dark areas."""
    source: str = "scl"
    """``scl`` (the classes above), ``model`` (the learned cloud/shadow mask, ukis-csmask) or ``both``
    (their union). Where the bands the learned mask needs are missing, SCL with a warning."""
    dilate: int = 0
    """Grow the unusable pixels by this many pixels (cloud edges and thin margins SCL leaves out)."""

    def __post_init__(self) -> None:
        if self.source not in MASK_SOURCES:
            raise InputError(f"mask source {self.source!r} must be one of {', '.join(MASK_SOURCES)}")
        if not 0 <= int(self.dilate) <= 64:
            raise InputError(f"dilate is a number of pixels 0-64, got {self.dilate}")

    @property
    def unusable(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.cloud + self.shadow + self.invalid + self.extra)))

    def describe(self) -> dict:
        """What went into the clear mask, for the cube's and the outputs' metadata."""
        return {"source": self.source, "scl_classes": list(self.unusable), "dilate": int(self.dilate)}

    @classmethod
    def from_classes(cls, classes, source: str = "scl", dilate: int = 0) -> "MaskConfig":
        """``[0, 1, 3, 8, 9, 10]`` or ``"0,1,3,8,9,10"`` → MaskConfig; unknown codes are an error."""
        from ..bands import SCL_CLASSES

        if isinstance(classes, str) and not classes.strip():
            raise InputError("--exclude-scl is empty, which would count every cloud as clear; give the SCL codes to "
                             "mask (default 0,1,3,8,9,10), or --exclude-scl none to really use every pixel")
        if isinstance(classes, str) and classes.strip().lower() == "none":
            classes = []
        elif isinstance(classes, str):
            try:
                classes = [int(v) for v in classes.split(",") if v.strip()]
            except ValueError as exc:
                raise InputError(f"SCL classes must be comma-separated codes 0-11, got {classes!r}") from exc
        codes = tuple(sorted({int(c) for c in classes}))
        unknown = [c for c in codes if c not in SCL_CLASSES]
        if unknown:
            raise InputError(f"unknown SCL classes {unknown}; valid codes are 0-11")
        return cls(cloud=tuple(c for c in codes if c in (8, 9, 10)), shadow=tuple(c for c in codes if c == 3),
                   invalid=tuple(c for c in codes if c in (0, 1)),
                   extra=tuple(c for c in codes if c not in DEFAULT_UNUSABLE_SCL), source=source, dilate=int(dilate))


@dataclass(frozen=True)
class CubeSpec:
    """How to turn items into a cube."""

    bands: tuple[str, ...] | None = None
    """Band ids in canonical order; ``None``: every L2A band the items have."""
    crs: str | None = None
    """Output CRS; default: the AOI's UTM zone."""
    resolution: float | None = None
    """Output pixel size (m); ``None``: the finest native resolution of the bands (20 m for a
    20 m-only series)."""
    chunk: int = 1024
    """Spatial chunk (pixels): the inference tile size (larger tiles waste less work on halos)."""
    mask: MaskConfig = MaskConfig()
    resampling: str = "bilinear"
    """For reflectance bands coarser than the output grid; SCL always uses nearest."""
    native_reads: bool = True
    """Bilinear only, for a cube that is loaded or stored (``load_cube``, ``--keep-cube``): read
    coarser bands (and SCL) on their own grid where its lattice lines up with the output's, and
    enlarge them here (:mod:`cloudfree.cube.native`) with the kernel streamed runs use on the
    model's device, so a stored cube and a streamed run of one request give one picture (GDAL's
    warp, ``False`` or ``--warp-reads``, rounds some enlarged values to the other neighbouring DN).
    Where the grids do not line up, GDAL warps either way. Speed of both: ``benchmarks/RESULTS.md``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", validate_bands(self.bands))
        if self.resolution is not None and not (self.resolution > 0):
            raise InputError(f"resolution must be a positive number of metres, got {self.resolution}")
        if self.chunk < 1:
            raise InputError(f"chunk must be at least 1 pixel, got {self.chunk}")
        if self.crs is not None:
            check_crs(self.crs)

    def resolved(self, items: list[pystac.Item]) -> "CubeSpec":
        """This spec with ``bands`` and ``resolution`` filled in from the items."""
        from ..bands import native_resolution
        from .load import available_bands

        bands = self.bands or available_bands(items)

        return replace(self, bands=bands, resolution=self.resolution or float(native_resolution(bands)))

    def to_dict(self) -> dict:
        return {"bands": list(self.bands) if self.bands else None, "crs": self.crs, "resolution": self.resolution,
                "chunk": self.chunk, "mask_unusable": list(self.mask.unusable), "resampling": self.resampling,
                "mask_source": self.mask.source, "mask_dilate": int(self.mask.dilate),
                "native_reads": self.native_reads}


def check_crs(crs) -> None:
    """An output CRS must be known and projected: the grid, the resolution and the model's
    windows are in metres."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        c = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"--crs {crs!r} is not a CRS pyproj knows ({exc}); e.g. EPSG:32631") from None
    if not c.is_projected:
        raise InputError(f"--crs {crs} is not a projected CRS in metres ({c.name}); cloudfree writes a grid in "
                         "metres: choose a UTM zone (e.g. EPSG:32631), or leave --crs out for the area's UTM zone")
