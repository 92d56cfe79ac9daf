"""DN → reflectance rules per STAC item, including the processing-baseline 04.00 offset.

Catalogs disagree: Planetary Computer serves raw ESA DN (reflectance = (DN - 1000) / 10000 for
baseline >= 04.00, declared nowhere in the item); Earth Search declares ``raster:bands`` scale
0.0001 / offset -0.1 but flags ``earthsearch:boa_offset_applied: true`` on items whose DN it has
already harmonised. One function decides, so the rule can be read and tested in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import pystac

__all__ = ["Radiometry", "item_radiometry", "MAX_REFLECTANCE", "dn_limit", "STORE_SCALE", "STORE_OFFSET", "STORE_MAX_DN",
           "store_shifts", "decode_plan"]

from ..bands import BOA_DN_OFFSET, MAX_REFLECTANCE, QUANTIFICATION


STORE_SCALE, STORE_OFFSET = 1e-4, -0.1
"""How a cube store encodes reflectance (uint16, 0 = no data): reflectance = DN * 1e-4 - 0.1."""
STORE_MAX_DN = 65000
"""The store's largest DN (reflectance 6.4): larger values are clipped to it."""


def store_shifts(scales, offsets) -> list[int] | None:
    """Per date, the whole number of DN that takes a date's own encoding to the store's, or None
    where a date's is not a whole-DN shift of it (a scale other than 1e-4).

    Why: every path decodes reflectance as ``float32(store DN) * float32(1e-4) + float32(-0.1)``
    (a loaded cube, a stored cube read back, streamed block reads on any device), so one request
    gives one picture whichever path made it; decoding each date's own DN instead differs from
    the store's by a float32 rounding, which the model can turn into a different choice."""
    out = []
    for scale, offset in zip(scales, offsets):
        k = (float(offset) - STORE_OFFSET) / STORE_SCALE
        if abs(float(scale) - STORE_SCALE) > 1e-9 or abs(k - round(k)) > 1e-3:
            return None
        out.append(int(round(k)))
    return out


def decode_plan(scales, offsets, nodata) -> tuple[list[int] | None, list[float], list[float], int]:
    """``(shifts, scales, offsets, nodata)`` a block's decode uses: the store's encoding for every
    date where :func:`store_shifts` can take each date's DN there (add ``shifts[t]`` to the DN that
    are not ``nodata``, clipped at :data:`STORE_MAX_DN`, no data 0), else the dates' own."""
    shifts = store_shifts(scales, offsets)
    if shifts is None:
        return None, list(scales), list(offsets), nodata
    return shifts, [STORE_SCALE] * len(shifts), [STORE_OFFSET] * len(shifts), 0


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
