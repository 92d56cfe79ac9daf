"""Sentinel-2 L2A band catalogue: canonical band ids, resolutions and per-catalog asset names.

Catalogs name the same band differently (Earth Search: ``red``; Planetary Computer: ``B04``).
Everything downstream uses the ESA band ids below, so the mapping lives in one place.
"""

from __future__ import annotations

from .errors import InputError

from dataclasses import dataclass

__all__ = ["Band", "DEFAULT_NORM", "S2_BANDS", "L2A_BANDS", "RGB", "SCL", "band_info", "validate_bands", "SCL_CLASSES", "DEFAULT_UNUSABLE_SCL", "CLEAR_SCL", "CLOUD_SHADOW_SCL", "QUANTIFICATION",
           "BOA_DN_OFFSET", "MAX_REFLECTANCE", "disk", "dilate_cross",
           "item_bands", "native_resolution"]


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

DEFAULT_UNUSABLE_SCL: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
"""SCL classes masked by default: no data, saturated/defective, cloud shadow, cloud medium/high
probability, thin cirrus. Not masked by default, and the two classes where SCL most often hides
cloud on real series: 7 (unclassified: haze and thin cloud edges land here) and 11 (snow: bright
cloud over cold ground is labelled snow, e.g. in September). Add them with ``--exclude-scl
0,1,3,7,8,9,10,11`` where no real snow is expected; masking 11 everywhere would delete real winter
snow cover. Dark areas (2) are kept: they include real terrain shadow and dark water."""
CLEAR_SCL: tuple[int, ...] = (4, 5, 6)
"""Vegetation, not vegetated, water: what a truly clear pixel is made of."""
CLOUD_SHADOW_SCL: tuple[int, ...] = (3, 8, 9, 10)
"""Cloud shadow, cloud medium/high probability, thin cirrus: a date's cloud footprint."""

QUANTIFICATION = 10000.0
"""L2A digital numbers per unit of reflectance."""
BOA_DN_OFFSET = 1000
"""DN added to L2A values from processing baseline 04.00 on: reflectance = (DN - 1000) / 10000."""
MAX_REFLECTANCE = 1.0
"""Above this a value is unusable whatever the cloud mask says: SCL labels bright cloud over cold
ground as snow (class 11) or clear, and surface reflectance above 1 is saturation or cloud."""

_BY_ID = {b.id: b for b in S2_BANDS}
_ALIASES = {**{b.id.lower(): b.id for b in S2_BANDS}, **{b.common_name: b.id for b in S2_BANDS},
            "b8a": "B8A", "nir08": "B8A", "scl": SCL}


def band_info(name: str) -> Band:
    """Look up a band by ESA id or common name (case-insensitive)."""
    canon = _ALIASES.get(name.lower())
    if canon is None or canon == SCL:
        raise InputError(f"unknown Sentinel-2 L2A band {name!r}; known: {', '.join(L2A_BANDS)}")
    return _BY_ID[canon]


def validate_bands(bands: list[str] | tuple[str, ...] | str | None) -> tuple[str, ...] | None:
    """Canonicalise a band list (ids or common names, or ``"B02,B03"``) into canonical order and fail
    early on unknown names; ``None`` stays ``None`` (= every L2A band the catalog has)."""
    if bands is None:
        return None
    if isinstance(bands, str):
        bands = [b.strip() for b in bands.split(",") if b.strip()]
    if not bands:
        raise InputError("the band list is empty")
    out = tuple(band_info(b).id for b in bands)
    if len(set(out)) != len(out):
        raise InputError(f"duplicate bands in {list(bands)}")
    return tuple(b for b in L2A_BANDS if b in out)


def item_bands(item, with_scl: bool = True) -> list[str]:
    """The L2A band ids (canonical order, then ``SCL``) that an item has assets for."""
    out = []
    for b in (*L2A_BANDS, SCL) if with_scl else L2A_BANDS:
        try:
            asset_key(item.assets, b)
        except KeyError:
            continue
        out.append(b)
    return out


def native_resolution(bands: tuple[str, ...] | list[str]) -> int:
    """The finest native resolution (m) among ``bands``: the default output grid."""
    return min(_BY_ID[b].resolution for b in bands)


def band_source(item_assets: dict, band: str) -> tuple[str, int]:
    """``(asset key, band index)`` of ``band`` (ESA id or ``SCL``) in one STAC item's assets.

    Tries the ESA id, the common name, then each asset's ``eo:bands`` name/common name, so Earth
    Search (``red``), Planetary Computer (``B04``) and multi-band assets (cloudfree's own output COGs:
    one asset, ``eo:bands`` named ``B04``, ``B08``, …) all resolve.
    """
    if band == SCL:
        for key in ("SCL", "scl"):
            if key in item_assets:
                return key, 0
        raise KeyError("no SCL (scene classification) asset")
    info = _BY_ID[band]
    for key in (info.id, info.common_name, info.id.lower()):
        if key in item_assets:
            return key, 0
    for key, asset in item_assets.items():
        for i, eb in enumerate(_eo_bands(asset)):
            if eb.get("name") in (info.id, info.common_name) and "jp2" not in key:
                return key, i
    raise KeyError(f"no asset for band {band} ({info.common_name})")


def asset_key(item_assets: dict, band: str) -> str:
    """The asset key that holds ``band``; see :func:`band_source`."""
    return band_source(item_assets, band)[0]


def load_name(item_assets: dict, band: str) -> str:
    """The name odc-stac loads ``band`` by: the asset key, or the band id inside a multi-band asset
    (odc-stac aliases ``eo:bands`` names)."""
    key, _ = band_source(item_assets, band)
    return band if len(_eo_bands(item_assets[key])) > 1 else key


def _eo_bands(asset) -> list[dict]:
    """An asset's ``eo:bands`` (pystac Asset or plain dict), empty when absent."""
    return (asset.get("eo:bands") if isinstance(asset, dict) else asset.extra_fields.get("eo:bands")) or []


# --- growing masks: the two shapes ----------------------------------------------------------------
def disk(pixels: int):
    """The structuring element of ``--dilate``: a disk of radius ``pixels`` ((2p+1)² bool), the
    same in the cube (:func:`cloudfree.cube.masks.dilate`) and the block reads (on the device)."""
    import numpy as np

    yy, xx = np.mgrid[-pixels : pixels + 1, -pixels : pixels + 1]
    return (yy**2 + xx**2) <= pixels**2


def dilate_cross(mask, px: int):
    """Binary dilation by ``px`` pixels (3×3 cross per step, as scipy's default), numpy only: how
    held-out cloud footprints grow (a cloud's hazy edge), in validation, training and benchmarks."""
    m = mask.astype(bool)
    for _ in range(max(px, 0)):
        g = m.copy()
        g[1:] |= m[:-1]
        g[:-1] |= m[1:]
        g[:, 1:] |= m[:, :-1]
        g[:, :-1] |= m[:, 1:]
        m = g
    return m


DEFAULT_NORM = {
    "mean": [0.06, 0.07, 0.09, 0.09, 0.13, 0.21, 0.24, 0.26, 0.27, 0.26, 0.22, 0.15],
    "std": [0.04, 0.04, 0.05, 0.06, 0.06, 0.08, 0.09, 0.10, 0.10, 0.10, 0.08, 0.07],
}
"""Typical clear-sky L2A reflectance per band (B01..B12): centring and scaling for the networks."""
