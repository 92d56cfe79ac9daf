"""What cubes and images record about how they were made, and what a run's ``run.json`` says.

Attributes of Zarr stores and xarray objects are flat strings (lists and dicts as JSON), so every
reader would otherwise parse them itself: here each record is a dataclass with ``to_attrs`` (what a
store keeps) and ``from_attrs`` (what any reader gets back, typed), in one place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

__all__ = ["CubeProvenance", "ImageProvenance", "RunManifest"]


def _json(value, default):
    """An attribute as stored (a JSON string) or as given (already parsed), ``default`` where absent."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return json.loads(value.lower() if value in ("True", "False") else value)
    return value


@dataclass(frozen=True)
class CubeProvenance:
    """A cube's attributes: which items, how they were decoded and masked."""

    mask: str = ""
    """In words: the SCL classes masked, the learned mask, the dilation."""
    mask_source: str = "scl"
    """The mask that decided: ``scl``, ``model`` or ``both``."""
    mask_config: dict = field(default_factory=dict)
    masked_scl_classes: list[int] = field(default_factory=list)
    synthetic: bool = False
    """True for the SYNTHETIC demo data: said in every output made from it."""
    item_ids: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    radiometry: dict = field(default_factory=dict)
    """Per solar day: how its DN were decoded (the processing baseline's offset)."""
    resolution: float | None = None
    inputs: dict = field(default_factory=dict)
    """What the input checks left out (``dropped``: item id → why) or reprojected (``reprojected``)."""
    title: str = "cloudfree Sentinel-2 L2A time cube"

    _PARSED = {"mask_config": {}, "masked_scl_classes": [], "synthetic": False, "item_ids": [], "collections": [],
               "radiometry": {}, "inputs": {}}

    def to_attrs(self) -> dict:
        out = {k: (json.dumps(v) if k in self._PARSED else v) for k, v in asdict(self).items()}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs) -> "CubeProvenance":
        known = {f.name for f in fields(cls)}
        kw = {k: (_json(v, cls._PARSED[k]) if k in cls._PARSED else v) for k, v in attrs.items() if k in known}
        if "resolution" in kw and kw["resolution"] is not None:
            kw["resolution"] = float(kw["resolution"])
        return cls(**kw)


@dataclass(frozen=True)
class ImageProvenance:
    """The period images' attributes: the method, the model, the inputs and the validation."""

    method: str = ""
    """What made the images: ``model``, a compositing method, or ``adaptive`` (validation chose per period)."""
    method_reason: str = ""
    model: str = ""
    """The checkpoint (or module) where the model made any image; empty otherwise."""
    masked_scl_classes: list[int] = field(default_factory=list)
    mask: str = ""
    mask_source: str = "scl"
    mask_config: dict = field(default_factory=dict)
    synthetic_input: bool = False
    input_dates: dict = field(default_factory=dict)
    """Period label → the dates (YYYY-MM-DD) that fed it."""
    validation: dict = field(default_factory=dict)
    """Period label → :meth:`~cloudfree.reconstruct.selfcheck.PeriodValidation.to_attrs`."""
    inputs: dict = field(default_factory=dict)
    """The cube's input checks: items left out and why, items reprojected."""
    title: str = "cloudfree cloud-free images"

    _PARSED = {"masked_scl_classes": [], "mask_config": {}, "synthetic_input": False, "input_dates": {},
               "validation": {}, "inputs": {}}

    @classmethod
    def of_cube(cls, cube: CubeProvenance, **kw) -> "ImageProvenance":
        """The images' record of a cube: its mask and whether it is SYNTHETIC, with ``kw`` added."""
        return cls(masked_scl_classes=list(cube.masked_scl_classes), mask=cube.mask, mask_source=cube.mask_source,
                   mask_config=dict(cube.mask_config), synthetic_input=cube.synthetic, inputs=dict(cube.inputs), **kw)

    def to_attrs(self) -> dict:
        return {k: (json.dumps(v) if k in self._PARSED else v) for k, v in asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs) -> "ImageProvenance":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (_json(v, cls._PARSED[k]) if k in cls._PARSED else v) for k, v in attrs.items() if k in known})


@dataclass
class RunManifest:
    """``run.json``: what a complete run made, from what, how, and what it checked."""

    status: str
    periods: dict
    """Period label → its files (zarr, cog, uncertainty, quicklook, stac_item)."""
    method: str
    method_reason: str
    mosaic: str
    """The images' Zarr store (``mosaic.zarr``)."""
    items: str | None = None
    """The STAC ItemCollection of the outputs."""
    model: str | None = None
    cube: str | None = None
    """``cube.zarr`` where the cube was stored; None for a streamed run."""
    streamed: bool = False
    block_reads: dict | None = None
    bands: list[str] = field(default_factory=list)
    resolution: float | None = None
    crs: str = ""
    shape: dict = field(default_factory=dict)
    masked_scl_classes: list[int] = field(default_factory=list)
    mask: str | None = None
    mask_source: str = "scl"
    mask_config: dict = field(default_factory=dict)
    device: str = ""
    synthetic_input: bool = False
    dates_without_data: list[str] = field(default_factory=list)
    dropped_inputs: dict = field(default_factory=dict)
    """Input item id → why it was left out (a damaged asset, a band or SCL the others have)."""
    reprojected_inputs: list[str] = field(default_factory=list)
    """Input items delivered in another CRS than most, reprojected onto the output grid."""
    skipped_assets: list[str] = field(default_factory=list)
    pixels_without_clear_observation: dict | int | None = None
    pixels_filled: int = 0
    """Pixels without a clear observation that were filled from the neighbouring periods."""
    checks: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunManifest":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
