"""Sentinel-2 L2A band catalogue: canonical band ids, resolutions and per-catalog asset names.

Catalogs name the same band differently (Earth Search: ``red``; Planetary Computer: ``B04``).
Everything downstream uses the ESA band ids below, so the mapping lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Band", "S2_BANDS", "L2A_BANDS", "RGB", "SCL", "band_info", "validate_bands", "SCL_CLASSES"]


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 MSI band."""

    id: str
    """ESA band id, e.g. ``B04``; the name used in every cloudfree array."""
    common_name: str
    """Earth Search asset key / STAC eo common name, e.g. ``red``."""
    resolution: int
    """Native ground sampling distance in metres."""
    center_wavelength: float
    """Centre wavelength in micrometres."""
    full_width_half_max: float
    """Band width in micrometres."""


S2_BANDS: tuple[Band, ...] = (
    Band("B01", "coastal", 60, 0.443, 0.027),
    Band("B02", "blue", 10, 0.490, 0.098),
    Band("B03", "green", 10, 0.560, 0.045),
    Band("B04", "red", 10, 0.665, 0.038),
    Band("B05", "rededge1", 20, 0.704, 0.019),
    Band("B06", "rededge2", 20, 0.740, 0.018),
    Band("B07", "rededge3", 20, 0.783, 0.028),
    Band("B08", "nir", 10, 0.842, 0.145),
    Band("B8A", "nir08", 20, 0.865, 0.033),
    Band("B09", "nir09", 60, 0.945, 0.026),
    Band("B11", "swir16", 20, 1.610, 0.143),
    Band("B12", "swir22", 20, 2.190, 0.242),
)
"""The 12 L2A surface-reflectance bands in ESA order (B10 is not in L2A); TerraMind's S2L2A order."""

L2A_BANDS: tuple[str, ...] = tuple(b.id for b in S2_BANDS)
RGB: tuple[str, str, str] = ("B04", "B03", "B02")
SCL = "SCL"
"""Scene classification layer; Earth Search calls the asset ``scl``."""

SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area_pixels",
    3: "cloud_shadows",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}

_BY_ID = {b.id: b for b in S2_BANDS}
_ALIASES = {**{b.id.lower(): b.id for b in S2_BANDS}, **{b.common_name: b.id for b in S2_BANDS},
            "b8a": "B8A", "nir08": "B8A", "scl": SCL}


def band_info(name: str) -> Band:
    """Look up a band by ESA id or common name (case-insensitive)."""
    canon = _ALIASES.get(name.lower())
    if canon is None or canon == SCL:
        raise ValueError(f"unknown Sentinel-2 L2A band {name!r}; known: {', '.join(L2A_BANDS)}")
    return _BY_ID[canon]


def validate_bands(bands: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Canonicalise a band list (ids or common names) and fail early on unknown names."""
    if bands is None:
        return L2A_BANDS
    out = tuple(band_info(b).id for b in bands)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate bands in {list(bands)}")
    return out


def asset_key(item_assets: dict, band: str) -> str:
    """Find the asset key that holds ``band`` (ESA id or ``SCL``) in one STAC item's assets.

    Tries the ESA id, the common name, then each asset's ``eo:bands`` name/common name, so both
    Earth Search (``red``) and Planetary Computer (``B04``) layouts resolve.
    """
    if band == SCL:
        for key in ("SCL", "scl"):
            if key in item_assets:
                return key
        raise KeyError("no SCL (scene classification) asset")
    info = _BY_ID[band]
    for key in (info.id, info.common_name, info.id.lower()):
        if key in item_assets:
            return key
    for key, asset in item_assets.items():
        extra = asset.get("eo:bands") if isinstance(asset, dict) else asset.extra_fields.get("eo:bands")
        for eb in extra or []:
            if eb.get("name") in (info.id, info.common_name) and "jp2" not in key:
                return key
    raise KeyError(f"no asset for band {band} ({info.common_name})")
