"""STAC items → a lazy, Dask-backed Sentinel-2 time cube, and the cube's Zarr store.

The cube is an ``xarray.Dataset`` with

* ``reflectance(time, band, y, x)`` float32 surface reflectance (NaN = no data),
* ``clear(time, y, x)`` uint8, 1 where the pixel is a usable clear observation,
* ``scl(time, y, x)`` uint8, the scene classification it came from,

in one projected CRS (``spatial_ref`` coordinate; ``.rio.crs`` and ``.odc.geobox`` work).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401  (registers .odc)
import odc.stac
import pystac
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from ..aoi import AOI, choose_crs
from ..bands import SCL, asset_key, validate_bands
from .radiometry import Radiometry, item_radiometry

__all__ = ["MaskConfig", "CubeSpec", "load_cube", "band_mapping", "plan_geobox", "open_cube"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaskConfig:
    """Which SCL classes make an observation unusable (defaults follow common practice)."""

    cloud: tuple[int, ...] = (8, 9, 10)
    """Cloud medium/high probability and thin cirrus."""
    shadow: tuple[int, ...] = (3,)
    """Cloud shadows."""
    invalid: tuple[int, ...] = (0, 1)
    """No data, saturated/defective."""
    extra: tuple[int, ...] = ()
    """Anything else to exclude, e.g. (11,) for snow or (2,) for dark areas."""

    @property
    def unusable(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.cloud + self.shadow + self.invalid + self.extra)))


@dataclass(frozen=True)
class CubeSpec:
    """How to turn items into a cube."""

    bands: tuple[str, ...] = field(default_factory=lambda: validate_bands(None))
    crs: str | None = None
    """Output CRS; default: the AOI's UTM zone."""
    resolution: float = 10.0
    chunk: int = 1024
    """Spatial chunk (pixels): the inference tile size (larger tiles waste less work on halos)."""
    mask: MaskConfig = MaskConfig()
    resampling: str = "bilinear"
    """For reflectance bands coarser than the output grid; SCL always uses nearest."""

    def to_dict(self) -> dict:
        return {"bands": list(self.bands), "crs": self.crs, "resolution": self.resolution, "chunk": self.chunk,
                "mask_unusable": list(self.mask.unusable), "resampling": self.resampling}


def band_mapping(items: list[pystac.Item], bands: tuple[str, ...]) -> dict[str, str]:
    """Map ESA band ids (and ``SCL``) to this catalog's asset keys; all items must agree."""
    first = items[0]
    mapping: dict[str, str] = {}
    for b in (*bands, SCL):
        try:
            mapping[b] = asset_key(first.assets, b)
        except KeyError as exc:
            raise ValueError(f"item {first.id} has no asset for {b}: assets are {sorted(first.assets)}") from exc
    for it in items[1:]:
        missing = [k for k in mapping.values() if k not in it.assets]
        if missing:
            raise ValueError(f"item {it.id} lacks assets {missing} that {first.id} has; mixed catalogs?")
    return mapping


def plan_geobox(items: list[pystac.Item], aoi: AOI, spec: CubeSpec):
    """The output GeoBox odc-stac will load into (no pixel reads)."""
    crs = choose_crs(aoi, spec.crs)
    zones = aoi.utm_zones()
    if spec.crs is None and len(zones) > 1:
        log.warning("AOI spans UTM zones %s; everything is reprojected to %s (give --crs to choose)", zones, crs)
    return odc.stac.output_geobox(list(items), crs=crs, resolution=spec.resolution, geopolygon=_geopolygon(aoi))


def _geopolygon(aoi: AOI):
    from odc.geo.geom import Geometry

    return Geometry(aoi.geojson, crs="EPSG:4326")


def _solar_day(item: pystac.Item) -> np.datetime64:
    lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
    dt = np.datetime64(item.datetime.replace(tzinfo=None), "s") + np.timedelta64(int(lon / 15 * 3600), "s")
    return dt.astype("datetime64[D]")


def item_radiometry_by_day(items: list[pystac.Item], asset: str) -> dict[np.datetime64, Radiometry]:
    """Radiometry per solar day (odc-stac's grouping); days that mix rules are an error."""
    out: dict[np.datetime64, Radiometry] = {}
    for it in items:
        day, r = _solar_day(it), item_radiometry(it, asset)
        if day in out and (out[day].offset, out[day].scale) != (r.offset, r.scale):
            raise ValueError(f"items of {day} need different offsets ({out[day].reason} vs {r.reason})")
        out[day] = r
    return out


def load_cube(items: list[pystac.Item], aoi: AOI, spec: CubeSpec = CubeSpec(), *, patch_url=None,
              fail_on_error: bool = True) -> xr.Dataset:
    """Load items lazily into the cube described in the module docstring. Nothing is computed."""
    if not items:
        raise ValueError("no items to load")
    bands = validate_bands(spec.bands)
    mapping = band_mapping(items, bands)
    geobox = plan_geobox(items, aoi, spec)
    resampling = {"*": spec.resampling, mapping[SCL]: "nearest"}
    raw = odc.stac.load(items, bands=list(mapping.values()), geobox=geobox, groupby="solar_day",
                        chunks={"time": 1, "y": spec.chunk, "x": spec.chunk}, resampling=resampling,
                        patch_url=patch_url, fail_on_error=fail_on_error)
    rad = item_radiometry_by_day(items, mapping[bands[0]])
    days = raw.time.values.astype("datetime64[D]")
    # odc-stac labels a solar-day group with its first item's time; match groups by sorted order.
    keys = sorted(rad)
    if len(keys) != len(days):
        raise RuntimeError(f"odc-stac made {len(days)} time steps from {len(keys)} solar days")
    scale = xr.DataArray(np.array([rad[k].scale for k in keys], np.float32), dims="time", coords={"time": raw.time})
    offset = xr.DataArray(np.array([rad[k].offset for k in keys], np.float32), dims="time", coords={"time": raw.time})
    nodata = rad[keys[0]].nodata
    dn = xr.concat([raw[mapping[b]] for b in bands], dim=xr.DataArray(np.array(bands, dtype=object), dims="band", name="band"))
    dn = dn.transpose("time", "band", "y", "x")
    refl = (dn.astype(np.float32) * scale + offset).where(dn != nodata).astype(np.float32)
    refl = refl.chunk({"band": -1})
    refl.attrs.update(units="1", long_name="surface reflectance", nodata=float("nan"))
    scl = raw[mapping[SCL]].astype(np.uint8)
    usable = ~scl.isin(list(spec.mask.unusable)) & refl.notnull().all("band")
    clear = usable.astype(np.uint8)
    clear.attrs.update(long_name="clear observation (1) or cloud/shadow/invalid (0)",
                       unusable_scl_classes=json.dumps(list(spec.mask.unusable)))
    ds = xr.Dataset({"reflectance": refl, "clear": clear, "scl": scl})
    ds = ds.assign_coords(spatial_ref=raw.spatial_ref) if "spatial_ref" in raw.coords else ds
    ds.attrs.update({
        "title": "cloudfree Sentinel-2 L2A time cube",
        "radiometry": json.dumps({str(k): rad[k].reason for k in keys}),
        "item_ids": json.dumps([i.id for i in items]),
        "synthetic": json.dumps(any(i.properties.get("cloudfree:synthetic") for i in items)),
    })
    return ds


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube store lazily with its CRS decoded (reflectance as float32)."""
    from ..zarrstore import check_complete

    check_complete(path)
    ds = xr.open_zarr(path, decode_coords="all")
    ds["reflectance"] = ds["reflectance"].astype(np.float32)
    return ds
