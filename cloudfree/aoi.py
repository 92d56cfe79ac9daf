"""Areas of interest: parse a bbox or GeoJSON once, validate it, and choose the output CRS."""

from __future__ import annotations

from .errors import AOIError

import json
import math
from dataclasses import dataclass
from pathlib import Path

import shapely.geometry
import shapely.errors
from shapely.geometry.base import BaseGeometry

__all__ = ["AOI", "parse_bbox", "parse_aoi", "utm_epsg"]


@dataclass(frozen=True)
class AOI:
    """An area of interest in EPSG:4326 longitude/latitude."""

    geometry: BaseGeometry
    """Polygon (or multipolygon) in lon/lat."""

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]

    @property
    def geojson(self) -> dict:
        return shapely.geometry.mapping(self.geometry)

    def utm_zones(self) -> list[int]:
        """EPSG codes of every UTM zone the AOI touches."""
        w, s, e, n = self.bbox
        north = (s + n) / 2 >= 0
        zones = range(_zone(w), _zone(min(e, 179.999999)) + 1)
        return [(32600 if north else 32700) + z for z in zones]


def _zone(lon: float) -> int:
    return int(math.floor((lon + 180.0) / 6.0)) % 60 + 1


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing a point."""
    return (32600 if lat >= 0 else 32700) + _zone(lon)


def parse_bbox(text: str | tuple | list) -> AOI:
    """Parse ``west,south,east,north`` (degrees) and check it is a sane, non-empty box."""
    try:
        vals = [float(v) for v in (text.replace(" ", ",").split(",") if isinstance(text, str) else text) if v != ""]
    except (TypeError, ValueError) as exc:
        raise AOIError(f"bbox {text!r} is not four numbers 'west,south,east,north'") from exc
    if len(vals) != 4:
        raise AOIError(f"bbox {text!r} needs exactly four numbers 'west,south,east,north', got {len(vals)}")
    w, s, e, n = vals
    if not all(math.isfinite(v) for v in vals):
        raise AOIError(f"bbox {text!r} contains non-finite values")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise AOIError(f"bbox {text!r} is outside lon [-180,180] / lat [-90,90]; give degrees (EPSG:4326)")
    if w >= e or s >= n:
        raise AOIError(f"bbox {text!r} is empty or inverted: need west < east and south < north")
    return AOI(shapely.geometry.box(w, s, e, n))


def parse_aoi(aoi: str | dict | Path) -> AOI:
    """Parse a GeoJSON geometry/Feature/FeatureCollection given as a file path, string or dict."""
    obj = aoi
    if isinstance(aoi, (str, Path)) and not str(aoi).lstrip().startswith("{"):
        path = Path(aoi)
        if not path.exists():
            raise AOIError(f"AOI file {path} does not exist")
        obj = path.read_text()
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise AOIError(f"AOI is not valid GeoJSON: {exc}") from exc
    if not isinstance(obj, dict) or "type" not in obj:
        raise AOIError("AOI GeoJSON must be an object with a 'type'")
    feats = obj.get("features", []) if obj["type"] == "FeatureCollection" else [obj] if obj["type"] == "Feature" else None
    raw = [f.get("geometry") for f in feats] if feats is not None else [obj]
    if any(g is None for g in raw):
        raise AOIError("AOI Feature has no geometry (null or missing); give a Polygon or MultiPolygon")
    try:
        geoms = [shapely.geometry.shape(g) for g in raw]
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise AOIError(f"AOI geometry is not valid GeoJSON ({type(exc).__name__}: {exc})") from None
    if not geoms:
        raise AOIError("AOI FeatureCollection has no features")
    invalid = [g for g in geoms if not g.is_valid]
    if invalid:
        from shapely.validation import explain_validity

        raise AOIError(f"AOI geometry is invalid ({explain_validity(invalid[0])}); fix it, e.g. with shapely's "
                       "make_valid or QGIS 'Fix geometries'")
    geom = shapely.unary_union(geoms)
    if geom.is_empty or geom.area == 0:
        raise AOIError("AOI geometry is empty or has no area")
    w, s, e, n = geom.bounds
    if w < -180 or e > 180 or s < -90 or n > 90:
        raise AOIError("AOI coordinates must be lon/lat degrees (EPSG:4326, RFC 7946)")
    return AOI(geom)


def choose_crs(aoi: AOI, crs: str | int | None = None) -> str:
    """Pick the output CRS: the given one, else the AOI's UTM zone.

    An AOI that spans several UTM zones gets the zone of its centroid, stated in the message; the
    caller logs it, so a mix of zones never happens silently.
    """
    if crs is not None:
        text = str(crs)
        return text if ":" in text else f"EPSG:{int(text)}"
    c = aoi.geometry.centroid
    return f"EPSG:{utm_epsg(c.x, c.y)}"
