"""DN → reflectance rules per STAC item, including the processing-baseline 04.00 offset.

Catalogs disagree: Planetary Computer serves raw ESA DN (reflectance = (DN - 1000) / 10000 for
baseline >= 04.00, declared nowhere in the item); Earth Search declares ``raster:bands`` scale
0.0001 / offset -0.1 but flags ``earthsearch:boa_offset_applied: true`` on items whose DN it has
already harmonised. One function decides, so the rule can be read and tested in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import pystac

__all__ = ["Radiometry", "item_radiometry", "MAX_REFLECTANCE", "dn_limit"]

from ..bands import BOA_DN_OFFSET, MAX_REFLECTANCE, QUANTIFICATION


def dn_limit(scale, offset):
    """The largest usable DN for reflectance = DN * scale + offset (see :data:`MAX_REFLECTANCE`)."""
    return (MAX_REFLECTANCE - offset) / scale


@dataclass(frozen=True)
class Radiometry:
    """Reflectance = DN * scale + offset; DN == nodata is missing."""

    scale: float
    offset: float
    nodata: int
    reason: str
    """Why this offset was chosen (shown in logs and cube attributes)."""


def _baseline(item: pystac.Item) -> float | None:
    pb = item.properties.get("s2:processing_baseline") or item.properties.get("processing:version")
    if pb is None:
        uri = item.properties.get("s2:product_uri", "")
        if "_N" in uri:
            pb = uri.split("_N")[1][:4]
            pb = f"{pb[:2]}.{pb[2:]}"
    try:
        return float(pb) if pb is not None else None
    except ValueError:
        return None


def item_radiometry(item: pystac.Item, asset_key: str, index: int = 0) -> Radiometry:
    """Decide scale/offset for band ``index`` of one reflectance asset of one item."""
    asset = item.assets[asset_key]
    rbs = asset.extra_fields.get("raster:bands") or [{}]
    rb = rbs[index] if index < len(rbs) else rbs[0]
    scale = float(rb.get("scale", 1.0 / QUANTIFICATION))
    nodata = int(rb.get("nodata", 0))
    declared = rb.get("offset")
    applied = item.properties.get("earthsearch:boa_offset_applied", item.properties.get("sentinel:boa_offset_applied"))
    pb = _baseline(item)
    if applied is True:
        return Radiometry(scale, 0.0, nodata, "catalog says the BOA offset is already applied (earthsearch:boa_offset_applied)")
    if pb is not None and pb >= 4.0:
        off = float(declared) if declared is not None else -BOA_DN_OFFSET / QUANTIFICATION
        return Radiometry(scale, off, nodata, f"processing baseline {pb:05.2f} >= 04.00: offset {off:+.4f}")
    if pb is None and declared is not None:
        return Radiometry(scale, float(declared), nodata, "offset declared in raster:bands")
    return Radiometry(scale, 0.0, nodata, f"processing baseline {pb} < 04.00: no offset" if pb else "no baseline: no offset")
