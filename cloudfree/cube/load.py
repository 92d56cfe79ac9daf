"""STAC items → a lazy, Dask-backed Sentinel-2 time cube, and the cube's Zarr store.

The cube is an ``xarray.Dataset`` with

* ``reflectance(time, band, y, x)`` float32 surface reflectance (NaN = no data),
* ``clear(time, y, x)`` uint8, 1 where the pixel is a usable clear observation,
* ``scl(time, y, x)`` uint8, the scene classification it came from,

in one projected CRS (``spatial_ref`` coordinate; ``.rio.crs`` and ``.odc.geobox`` work).
"""

from __future__ import annotations

from ..errors import DataError, InputError
from .spec import CubeSpec, MaskConfig, check_crs  # noqa: F401  (the light request types, re-exported)

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401  (registers .odc)
import odc.stac
import pystac
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rasterio.errors import NotGeoreferencedWarning

from ..aoi import AOI, choose_crs
from ..provenance import CubeProvenance
from ..bands import DEFAULT_UNUSABLE_SCL, SCL, band_source, item_bands, load_name
from .radiometry import STORE_MAX_DN, STORE_OFFSET, STORE_SCALE, Radiometry, dn_limit, item_radiometry, store_shifts

__all__ = ["MaskConfig", "CubeSpec", "load_cube", "band_mapping", "available_bands", "plan_geobox", "open_cube",
           "DEFAULT_UNUSABLE_SCL"]

log = logging.getLogger(__name__)

# odc-stac reprojects through in-memory arrays that carry no georeference: a warning users cannot act on
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)




def _where(items: list[pystac.Item]) -> str:
    cols = sorted({i.collection_id or "?" for i in items})
    return f"collection {', '.join(cols)}"


def available_bands(items: list[pystac.Item]) -> tuple[str, ...]:
    """Every L2A band all items have assets for, in canonical order."""
    common = set(item_bands(items[0], with_scl=False))
    for it in items[1:]:
        common &= set(item_bands(it, with_scl=False))
    out = tuple(b for b in item_bands(items[0], with_scl=False) if b in common)
    if not out:
        raise InputError(f"the items of {_where(items)} have no Sentinel-2 L2A band assets "
                         f"(item {items[0].id} has assets {sorted(items[0].assets)})")
    return out


def band_mapping(items: list[pystac.Item], bands: tuple[str, ...]) -> dict[str, str]:
    """Map ESA band ids (and ``SCL`` where every item has it) to this catalog's asset keys."""
    first = items[0]
    missing = [b for b in bands if b not in item_bands(first, with_scl=False)]
    if missing:
        raise InputError(f"{_where(items)} has no band {', '.join(missing)}: its items have bands "
                         f"{', '.join(item_bands(first))}. Choose from those with --bands.")
    mapping = {b: load_name(first.assets, b) for b in bands}
    if all(SCL in item_bands(it) for it in items):
        mapping[SCL] = load_name(first.assets, SCL)
    for it in items[1:]:
        lacking = [b for b in mapping if b != SCL and b not in item_bands(it)]
        if lacking:
            raise InputError(f"item {it.id} lacks bands {lacking} that {first.id} has; choose common bands with --bands")
    return mapping


def plan_geobox(items: list[pystac.Item], aoi: AOI | None, spec: CubeSpec):
    """The output GeoBox odc-stac will load into (no pixel reads); ``aoi=None``: the items' extent
    in their own CRS."""
    if spec.bands is None or spec.resolution is None:
        spec = spec.resolved(items)
    if aoi is None:
        gb = odc.stac.output_geobox(list(odc.stac.parse_items(items)), crs=spec.crs, resolution=spec.resolution)
        if gb is None:
            raise DataError(f"the items of {_where(items)} carry no usable projection metadata (the projection "
                             "extension's proj:epsg/proj:code, proj:shape, proj:transform), so their own grid is "
                             "unknown: give --bbox or --aoi")
        return gb
    crs = choose_crs(aoi, spec.crs)
    zones = aoi.utm_zones()
    if spec.crs is None and len(zones) > 1:
        log.warning("AOI spans UTM zones %s; everything is reprojected to %s (give --crs to choose)", zones, crs)
    return odc.stac.output_geobox(list(items), crs=crs, resolution=spec.resolution, geopolygon=_geopolygon(aoi))


def _geopolygon(aoi: AOI):
    from odc.geo.geom import Geometry

    return Geometry(aoi.geojson, crs="EPSG:4326")


def solar_day(item: pystac.Item) -> np.datetime64:
    lon = (item.bbox[0] + item.bbox[2]) / 2 if item.bbox else 0.0
    dt = np.datetime64(item.datetime.replace(tzinfo=None), "s") + np.timedelta64(int(lon / 15 * 3600), "s")
    return dt.astype("datetime64[D]")


def item_radiometry_by_day(items: list[pystac.Item], asset: str, index: int = 0) -> dict[np.datetime64, Radiometry]:
    """Radiometry per solar day (odc-stac's grouping); days that mix rules are an error."""
    out: dict[np.datetime64, Radiometry] = {}
    for it in items:
        day, r = solar_day(it), item_radiometry(it, asset, index)
        if day in out and (out[day].offset, out[day].scale) != (r.offset, r.scale):
            raise DataError(f"items of {day} need different offsets ({out[day].reason} vs {r.reason})")
        out[day] = r
    return out


def _load_raw(items: list[pystac.Item], mapping: dict[str, str], geobox, spec: CubeSpec, **kw) -> xr.Dataset:
    """odc-stac's lazy DN per load name on ``geobox``; coarser bands on their own grid where they
    can be (see :attr:`CubeSpec.native_reads`), enlarged here."""
    names = list(mapping.values())
    scl_name = mapping.get(SCL)
    resampling = {"*": spec.resampling, **({scl_name: "nearest"} if scl_name else {})}
    chunks = {"time": 1, "y": spec.chunk, "x": spec.chunk}
    plans = {}
    if spec.native_reads and spec.resampling == "bilinear":
        from .native import native_reads

        plans = native_reads(items, names, geobox)
    fine = [n for n in names if n not in plans]
    if not plans or not fine:  # nothing to gain, or no band on the output grid: odc-stac does it all
        return odc.stac.load(items, bands=names, geobox=geobox, groupby="solar_day", chunks=chunks,
                             resampling=resampling, **kw)
    from .native import upsample

    raw = odc.stac.load(items, bands=fine, geobox=geobox, groupby="solar_day", chunks=chunks,
                        resampling=resampling, **kw)
    like = raw[fine[0]]
    by_grid: dict = {}
    for n, plan in plans.items():
        by_grid.setdefault(plan, []).append(n)
    for plan, group in by_grid.items():
        c = -(-spec.chunk // plan.factor)
        low = odc.stac.load(items, bands=group, geobox=plan.geobox, groupby="solar_day",
                            chunks={"time": 1, "y": c, "x": c}, resampling="nearest", **kw)
        if not np.array_equal(low.time.values, raw.time.values):
            raise RuntimeError("odc-stac grouped the bands on their own grid into other dates than the rest")
        for n in group:
            raw[n] = upsample(low[n], plan, like, nearest=(n == scl_name))
    return raw[names]


def load_cube(items: list[pystac.Item], aoi: AOI | None = None, spec: CubeSpec | None = None, *, patch_url=None,
              fail_on_error: bool = True, geobox=None, **spec_args) -> xr.Dataset:
    """Load items lazily into the cube described in the module docstring. Nothing is computed.

    ``aoi``: an :class:`~cloudfree.aoi.AOI`, a bbox (west, south, east, north in degrees) or GeoJSON;
    ``None`` loads the items' whole extent in their own CRS.

    ``spec`` (or its fields as keywords: ``bands``, ``resolution``, ``crs``, ``chunk``, ``mask``)
    says how; bands and resolution default to what the items have. Items without an SCL asset give
    a cube whose ``clear`` is "has data" (said in the ``mask`` attribute). ``geobox``: load this
    grid instead of the one planned from ``aoi`` (e.g. a window of a run's grid).
    """
    if not items:
        raise InputError("no items to load")
    aoi = _as_aoi(aoi)
    spec = (replace(spec, **spec_args) if spec is not None else CubeSpec(**spec_args)).resolved(items)
    mapping = band_mapping(items, spec.bands)
    geobox = geobox if geobox is not None else plan_geobox(items, aoi, spec)
    raw = _load_raw(items, mapping, geobox, spec, patch_url=patch_url, fail_on_error=fail_on_error)
    refl, has_data, rad = _decoded(raw, items, mapping, spec.bands)
    scl, bad, source, cloud_class, mask_desc = _unusable(raw, refl, items, mapping, spec)
    clear = (~bad & has_data).astype(np.uint8)
    has_scl = SCL in mapping
    clear.attrs.update(long_name="clear observation (1) or cloud/shadow/invalid (0)",
                       unusable_scl_classes=json.dumps(list(spec.mask.unusable) if has_scl else []),
                       mask_source=source, mask_dilate=int(spec.mask.dilate))
    scl.attrs.update(long_name="Sentinel-2 scene classification (0 where the items have none)")
    ds = xr.Dataset({"reflectance": refl, "clear": clear, "scl": scl})
    if cloud_class is not None:
        ds["cloud_class"] = cloud_class
    ds = ds.assign_coords(spatial_ref=raw.spatial_ref) if "spatial_ref" in raw.coords else ds
    ds.attrs.update(CubeProvenance(
        mask=mask_desc, mask_source=source,
        mask_config={**spec.mask.describe(), "source": source, "requested_source": spec.mask.source},
        masked_scl_classes=list(spec.mask.unusable) if has_scl else [],
        synthetic=any(bool(i.properties.get("cloudfree:synthetic")) for i in items),
        item_ids=[i.id for i in items], collections=sorted({i.collection_id or "" for i in items}),
        radiometry={str(k): r.reason for k, r in rad.items()}, resolution=float(spec.resolution)).to_attrs())
    return ds


def _as_aoi(aoi) -> AOI | None:
    """An :class:`AOI` from an AOI, a bbox or GeoJSON (a dict, a string or a file); None stays None."""
    if aoi is None or isinstance(aoi, AOI):
        return aoi
    from ..aoi import parse_aoi, parse_bbox

    geojson = isinstance(aoi, dict) or str(aoi).lstrip().startswith("{") or str(aoi).endswith(("json", "geojson"))
    return parse_aoi(aoi) if geojson else parse_bbox(aoi)


def _decoded(raw: xr.Dataset, items: list[pystac.Item], mapping: dict, bands: tuple[str, ...]):
    """``(reflectance (time, band, y, x), has_data (time, y, x), radiometry by solar day)``: the
    DN decoded with each day's scale and offset; nodata, saturated or over-bright values never
    count as data."""
    key, index = band_source(items[0].assets, bands[0])
    rad = item_radiometry_by_day(items, key, index)
    days = raw.time.values.astype("datetime64[D]")
    # odc-stac labels a solar-day group with its first item's time; match groups by sorted order.
    keys = sorted(rad)
    if len(keys) != len(days):
        raise RuntimeError(f"odc-stac made {len(days)} time steps from {len(keys)} solar days")
    scale = xr.DataArray(np.array([rad[k].scale for k in keys], np.float32), dims="time", coords={"time": raw.time})
    offset = xr.DataArray(np.array([rad[k].offset for k in keys], np.float32), dims="time", coords={"time": raw.time})
    nodata = rad[keys[0]].nodata
    dn = xr.concat([raw[mapping[b]] for b in bands], dim=xr.DataArray(np.array(bands, dtype=str), dims="band", name="band"))
    dn = dn.transpose("time", "band", "y", "x")
    shifts = store_shifts(scale.values, offset.values)
    if shifts is not None:  # decoded as the store decodes (see store_shifts): one picture from every path
        shift = xr.DataArray(np.array(shifts, np.int32), dims="time", coords={"time": raw.time})
        stored = (dn.astype(np.int32) + shift).clip(max=STORE_MAX_DN)
        refl = (stored.astype(np.float32) * np.float32(STORE_SCALE) + np.float32(STORE_OFFSET)).where(dn != nodata)
    else:
        refl = (dn.astype(np.float32) * scale + offset).where(dn != nodata)
    refl = refl.astype(np.float32)
    refl = refl.chunk({"band": -1})
    refl.attrs.update(units="1", long_name="surface reflectance", nodata=float("nan"))
    # from the stored DN, not the decoded floats: the same pixels (reflectance is NaN exactly where
    # the DN is nodata), without decoding every band of every date just for the mask
    has_data = (dn != nodata).all("band") if nodata is not None else refl.notnull().all("band")
    has_data = has_data & (dn <= dn_limit(scale, offset)).all("band")  # saturated or cloud: never usable
    return refl, has_data, {k: rad[k] for k in keys}


def _unusable(raw: xr.Dataset, refl: xr.DataArray, items: list[pystac.Item], mapping: dict, spec: CubeSpec):
    """``(scl, unusable, mask source used, learned cloud classes or None, description)``: the SCL
    classes of the mask config, the learned mask where asked (SCL alone, said, where it cannot
    run), grown by the config's dilation."""
    if SCL in mapping:
        scl = raw[mapping[SCL]].astype(np.uint8)
        bad = scl.isin(list(spec.mask.unusable))
        desc = f"SCL classes {list(spec.mask.unusable)} masked"
    else:
        log.warning("the items of %s have no SCL asset: every pixel with data counts as clear", _where(items))
        scl = xr.zeros_like(raw[mapping[spec.bands[0]]], dtype=np.uint8)
        bad = xr.zeros_like(scl, dtype=bool)
        desc = "no SCL asset: every pixel with data counts as clear"
    source, cloud_class = spec.mask.source, None
    if source != "scl":
        from .masks import CLOUD, SHADOW, learned_mask

        try:
            cloud_class = learned_mask(refl, spec.chunk)
        except LookupError as exc:
            warnings.warn(f"--mask {source}: {exc}; using SCL only", stacklevel=3)
            desc += f"; learned mask not used ({exc})"
            source = "scl"
    if cloud_class is not None:
        learned = cloud_class.isin([CLOUD, SHADOW])
        what = f"learned mask ({cloud_class.attrs['model']}) cloud + shadow"
        bad, desc = (learned, what) if source == "model" else (bad | learned, f"{desc} + {what}")
    if spec.mask.dilate:
        from .masks import dilate

        bad = dilate(bad, spec.mask.dilate)
        desc += f", grown by {spec.mask.dilate} px"
    return scl, bad, source, cloud_class, desc


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube store lazily with its CRS decoded: ``reflectance`` as float32, and ``dn``, the
    same values as stored (uint16 with ``scale``/``offset``/``fill`` attributes), which the
    model path sends to the GPU undecoded."""
    from ..zarrstore import check_complete

    check_complete(path)
    ds = xr.open_zarr(path, decode_coords="all")
    ds["reflectance"] = ds["reflectance"].astype(np.float32)
    raw = xr.open_zarr(path, decode_coords="all", mask_and_scale=False)["reflectance"]
    if raw.dtype == np.uint16 and "scale_factor" in raw.attrs:
        # the stored digital numbers, for the model's device-side decode (half the bytes of float32);
        # plain attributes, not xarray's encoding keys (xarray refuses those in attrs when writing)
        a = raw.attrs
        scale, offset, fill = float(a["scale_factor"]), float(a.get("add_offset", 0.0)), int(a.get("_FillValue", 0))
        ds["dn"] = xr.DataArray(raw.data, coords=raw.coords, dims=raw.dims, attrs={
            "long_name": "reflectance as stored: reflectance = dn * scale + offset, fill = no data",
            "scale": scale, "offset": offset, "fill": fill})
        # decoded in float32 as the model's device decodes ``dn`` (xarray's decode goes through
        # float64 and rounds once: another float32 in some values)
        refl = (ds["dn"].astype(np.float32) * np.float32(scale) + np.float32(offset)).where(ds["dn"] != fill)
        ds["reflectance"] = refl.astype(np.float32).assign_attrs(ds["reflectance"].attrs)
    return ds
