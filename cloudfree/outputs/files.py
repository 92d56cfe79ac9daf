"""Write what users open: COGs per period, an RGB quicklook PNG, and STAC Items for the outputs.

The COGs' tiles are compressed while the Zarr is written (:mod:`.cog`); what is read back from the
finished Zarr is read window by window, so memory stays bounded whatever the AOI size (the
quicklook comes from the COG's overviews); files are written to a temporary name and renamed
when complete.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pystac
import rasterio
import rasterio.enums
import xarray as xr

from ..bands import RGB, S2_BANDS
from .cog import COG_SCALE, CogPlan
from .folder import write_atomic

__all__ = ["write_cog", "cog_plan", "cog_meta", "write_quicklook", "write_stac_item", "rgb_image", "cog_is_current",
           "COG_SCALE"]

_INFO = {b.id: b for b in S2_BANDS}


def cog_plan(ds: xr.Dataset, path: str | Path, digest: str = "") -> CogPlan:
    """The COG plan of one period of ``ds`` (regions = its chunks)."""
    refl = ds["reflectance"]
    nb, ny, nx = refl.sizes["band"], refl.sizes["y"], refl.sizes["x"]
    cy = refl.chunks[refl.dims.index("y")][0] if refl.chunks else min(ny, 1024)
    cx = refl.chunks[refl.dims.index("x")][0] if refl.chunks else min(nx, 1024)
    return CogPlan.for_image(path, ny, nx, nb, cy, cx, digest)


def cog_meta(ds: xr.Dataset, t: int, tags: dict | None = None) -> dict:
    """What a period's COG says about itself: grid, band names, period and the run's tags."""
    geobox = ds.odc.geobox
    return {"crs": geobox.crs.to_wkt(), "transform": geobox.affine, "descriptions": [str(b) for b in ds.band.values],
            "tags": {"period": str(ds.period.values[t]), "software": "cloudfree", **(tags or {})}}


def write_cog(ds: xr.Dataset, t: int, path: str | Path, tags: dict | None = None, plan: CogPlan | None = None) -> Path:
    """One period as a COG: uint16 DN with band scale 1e-4 / offset 0 and nodata 0 in the band
    metadata (``rioxarray.open_rasterio(mask_and_scale=True)`` and QGIS read reflectance), band
    descriptions = band ids, deflate + PREDICTOR=2, 256 px tiles, averaged overviews (even for
    small outputs), every IFD before the tiles.

    ``plan``: the regions compressed already while the Zarr was written (:func:`write_outputs`);
    the others are read from ``ds`` and compressed here, on all cores, a bounded number at once,
    so memory stays flat whatever the area. Written to ``<name>.part`` and renamed when complete.
    """
    if plan is None:
        plan = cog_plan(ds, path, (tags or {}).get("cloudfree_fingerprint", ""))
        plan.prepare(fresh=True)
    refl = ds["reflectance"].isel(time=t)

    def read(y0: int, x0: int) -> np.ndarray:
        win = refl[:, y0 : y0 + plan.cy, x0 : x0 + plan.cx]
        return np.asarray(win.compute(scheduler="synchronous").values, np.float32)

    return plan.finish(read, cog_meta(ds, t, tags))


def cog_is_current(path: str | Path, digest: str) -> bool:
    """True when ``path`` is a COG this run's outputs wrote (same fingerprint digest in its tags):
    a COG left from another method or catalog is never reused."""
    try:
        with rasterio.open(path) as src:
            return src.tags().get("cloudfree_fingerprint") == digest
    except Exception:
        return False


FALSE_COLOUR = (("B08", "B04", "B03"), ("B12", "B8A", "B05"), ("B11", "B8A", "B05"), ("B8A", "B05", "B11"))
"""Band triples for a picture where the red, green and blue bands are not all present."""


def display_bands(bands) -> tuple[list[str], str]:
    """``(three band ids, what the picture is)``: true colour where B04, B03, B02 are present,
    else a false-colour triple (colour infrared, SWIR), else the first, middle and last band."""
    have = [str(b) for b in bands]
    if all(b in have for b in RGB):
        return list(RGB), "true colour"
    for trio in FALSE_COLOUR:
        if all(b in have for b in trio):
            return list(trio), f"false colour ({', '.join(trio)} as red, green, blue)"
    trio = [have[0], have[len(have) // 2], have[-1]]
    return trio, ("grey" if len(set(trio)) == 1 else f"false colour ({', '.join(trio)} as red, green, blue)")


def rgb_image(refl: xr.DataArray, max_side: int = 1024, gain: float = 3.5) -> np.ndarray:
    """(H, W, 3) uint8 picture from (band, y, x) reflectance, coarsened lazily, in the bands of
    :func:`display_bands` (true colour where it can be)."""
    trio, _ = display_bands(refl.band.values)
    rgb = refl.sel(band=trio)
    f = max(1, int(np.ceil(max(rgb.sizes["y"], rgb.sizes["x"]) / max_side)))
    if f > 1:
        rgb = rgb.coarsen(y=f, x=f, boundary="trim").mean()
    return _picture(np.asarray(rgb.values, np.float32).transpose(1, 2, 0), gain)


def _picture(a: np.ndarray, gain: float = 3.5) -> np.ndarray:
    """(H, W, 3) reflectance → uint8 picture, nodata in magenta: never mistaken for data."""
    img = np.clip(np.nan_to_num(a) * gain, 0, 1) ** (1 / 1.2)
    out = (img * 255).astype(np.uint8)
    out[~np.isfinite(a).all(-1)] = (255, 0, 255)
    return out


def _rgb_from_cog(cog: Path, bands: list[str], max_side: int = 1024) -> np.ndarray:
    """The picture from a COG's overviews (averaged when the COG is written): no pass
    over the full-resolution pixels, which on a whole Sentinel-2 tile took seconds."""
    present = [b for b in RGB if b in bands]
    idx = [bands.index(b) + 1 for b in present] if len(present) == 3 else [1, 1, 1]
    with rasterio.open(cog) as src:
        f = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
        shape = (3, max(1, src.height // f), max(1, src.width // f))
        dn = src.read(idx, out_shape=shape, resampling=rasterio.enums.Resampling.average)
    a = np.where(dn > 0, dn * COG_SCALE, np.nan).astype(np.float32)
    return _picture(a.transpose(1, 2, 0))


def write_quicklook(ds: xr.Dataset, t: int, path: str | Path, label: str = "", synthetic: bool = False,
                    cog: str | Path | None = None) -> Path:
    """RGB quicklook PNG (nodata magenta); a SYNTHETIC banner across the top for generated inputs.
    From ``cog``'s overviews where given, else from ``ds`` coarsened."""
    from PIL import Image, ImageDraw

    if cog is not None:
        img = Image.fromarray(_rgb_from_cog(Path(cog), [str(b) for b in ds.band.values]))
    else:
        img = Image.fromarray(rgb_image(ds["reflectance"].isel(time=t)))
    if synthetic:
        draw = ImageDraw.Draw(img)
        h = max(12, img.height // 12)
        draw.rectangle([0, 0, img.width, h], fill=(200, 0, 0))
        draw.text((4, max(0, h // 2 - 6)), "SYNTHETIC DATA - not a real place", fill=(255, 255, 255))
    path = Path(path)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_atomic(path, buf.getvalue())  # never through a link
    return path


def _utc(day: np.datetime64, end: bool = False):
    import datetime as dt

    d = dt.datetime.fromisoformat(np.datetime_as_string(day, unit="D"))
    if end:
        d = d.replace(hour=23, minute=59, second=59)
    return d.replace(tzinfo=dt.timezone.utc)


def write_uncertainty_cog(ds: xr.Dataset, t: int, path: str | Path) -> Path:
    """The period's ``uncertainty`` layer as a one-band COG beside the reflectance COG: uint16 with
    scale 1e-4 (reflectance units) and nodata 65535, so GIS tools read the expected absolute error.
    Written from the finished Zarr (a one-band image; GDAL builds the overviews)."""
    import rasterio

    path = Path(path)
    u = ds["uncertainty"].isel(time=t).values
    dn = np.where(np.isfinite(u), np.clip(np.round(u * 1e4), 0, 65534), 65535).astype(np.uint16)
    tmp = path.with_name(path.name + ".part")
    profile = {"driver": "COG", "width": dn.shape[1], "height": dn.shape[0], "count": 1, "dtype": "uint16",
               "crs": ds.rio.crs, "transform": ds.rio.transform(), "nodata": 65535, "compress": "deflate",
               "predictor": 2, "blocksize": 256, "num_threads": "all_cpus"}  # compression and overviews on every core
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(dn, 1)
        dst.scales, dst.offsets = (1e-4,), (0.0,)
        dst.set_band_description(1, "uncertainty: expected absolute error (band mean, 68 % interval half-width)")
    os.replace(tmp, path)
    return path


def write_stac_item(ds: xr.Dataset, t: int, assets: dict[str, Path], path: str | Path, *, item_id: str,
                    properties: dict | None = None, collection: str = "cloudfree-output") -> pystac.Item:
    """A STAC Item for one output period, built by rio-stac from the COG itself (geometry, ``proj:*``,
    ``raster:bands`` with scale/offset/nodata and statistics) plus ``eo:bands`` with band ids and
    common names, ``datetime`` = period centre and ``start_datetime``/``end_datetime``."""
    from pystac.extensions.eo import Band, EOExtension
    from rio_stac import create_stac_item

    path = Path(path)
    cog = Path(assets["cog"])
    props = {
        "start_datetime": _utc(ds.period_start.values[t]).isoformat().replace("+00:00", "Z"),
        "end_datetime": _utc(ds.period_end.values[t], end=True).isoformat().replace("+00:00", "Z"),
        "cloudfree:period": str(ds.period.values[t]),
        **(properties or {}),
    }
    item = create_stac_item(str(cog), input_datetime=_utc(ds.time.values[t]), id=item_id, collection=collection,
                            properties=props, asset_name="reflectance", asset_roles=["data"],
                            asset_media_type=pystac.MediaType.COG, asset_href=os.path.relpath(cog, path.parent),
                            with_proj=True, with_raster=True, with_eo=True)
    item.links = [ln for ln in item.links if ln.rel != "collection"]  # no collection document is written
    asset = item.assets["reflectance"]
    EOExtension.ext(asset, add_if_missing=True).bands = [
        Band.create(name=str(b), common_name=_INFO[str(b)].common_name, center_wavelength=_INFO[str(b)].center_wavelength,
                    full_width_half_max=_INFO[str(b)].full_width_half_max, description=f"cloud-free {b} reflectance")
        for b in ds.band.values]
    media = {".png": pystac.MediaType.PNG, ".zarr": "application/vnd+zarr", ".tif": pystac.MediaType.COG}
    roles = {"quicklook": ["overview"], "zarr": ["data"], "uncertainty": ["data", "uncertainty"]}
    for key, p in assets.items():
        if key == "cog":
            continue
        item.add_asset(key, pystac.Asset(os.path.relpath(p, path.parent), media_type=media.get(Path(p).suffix),
                                         roles=roles.get(key, ["metadata"]),
                                         title=f"quicklook, {display_bands(ds.band.values)[1]}" if key == "quicklook"
                                         else None))
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1))
    os.replace(tmp, path)
    return item
