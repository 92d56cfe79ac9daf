"""Write what users open: COGs per period, an RGB quicklook PNG, and STAC Items for the outputs.

Everything is read back from the finished output Zarr window by window, so memory stays bounded
whatever the AOI size; files are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pystac
import rasterio
import xarray as xr
from rasterio.windows import Window

from ..bands import RGB

__all__ = ["write_cog", "write_quicklook", "write_stac_item", "rgb_image"]

COG_SCALE = 1e-4


def write_cog(ds: xr.Dataset, t: int, path: str | Path, block: int = 512) -> Path:
    """One period as a COG: uint16 reflectance × 10000 (nodata 0; scale 1e-4 in the tags),
    deflate, 512 px internal tiles, overviews. Built from a tiled GeoTIFF written block by block."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    path = Path(path)
    tmp = path.with_name(path.stem + ".tiled.tif")
    refl = ds["reflectance"].isel(time=t)
    nb, ny, nx = refl.shape
    transform = ds.odc.geobox.affine if hasattr(ds, "odc") else refl.rio.transform()
    profile = dict(driver="GTiff", width=nx, height=ny, count=nb, dtype="uint16", nodata=0, crs=ds.rio.crs,
                   transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")
    with rasterio.open(tmp, "w", **profile) as dst:
        for y0 in range(0, ny, block):
            for x0 in range(0, nx, block):
                win = refl.isel(y=slice(y0, y0 + block), x=slice(x0, x0 + block)).values
                dn = np.where(np.isfinite(win), np.clip(np.round(np.nan_to_num(win) / COG_SCALE), 1, 65535), 0)
                dst.write(dn.astype(np.uint16), window=Window(x0, y0, win.shape[2], win.shape[1]))
        for i, b in enumerate(ds.band.values, start=1):
            dst.set_band_description(i, str(b))
            dst.update_tags(i, scale=COG_SCALE, offset=0.0)
        dst.update_tags(period=str(ds.period.values[t]), software="cloudfree")
    prof = cog_profiles.get("deflate")
    prof.update(blockxsize=256, blockysize=256)
    part = path.with_name(path.name + ".part")
    levels = max(2, int(np.ceil(np.log2(max(ny, nx) / 256))) + 1)  # overviews even for small outputs
    cog_translate(str(tmp), str(part), prof, overview_resampling="average", overview_level=levels, quiet=True,
                  add_mask=False, in_memory=False, web_optimized=False)
    os.replace(part, path)
    tmp.unlink(missing_ok=True)
    return path


def rgb_image(refl: xr.DataArray, max_side: int = 1024, gain: float = 3.5) -> np.ndarray:
    """(H, W, 3) uint8 true-colour picture from (band, y, x) reflectance, coarsened lazily."""
    rgb = refl.sel(band=list(RGB))
    f = max(1, int(np.ceil(max(rgb.sizes["y"], rgb.sizes["x"]) / max_side)))
    if f > 1:
        rgb = rgb.coarsen(y=f, x=f, boundary="trim").mean()
    a = np.asarray(rgb.values, np.float32).transpose(1, 2, 0)
    img = np.clip(np.nan_to_num(a) * gain, 0, 1) ** (1 / 1.2)
    out = (img * 255).astype(np.uint8)
    out[~np.isfinite(a).all(-1)] = (255, 0, 255)  # nodata in magenta: never mistaken for data
    return out


def write_quicklook(ds: xr.Dataset, t: int, path: str | Path, label: str = "") -> Path:
    from PIL import Image

    img = Image.fromarray(rgb_image(ds["reflectance"].isel(time=t)))
    path = Path(path)
    img.save(path)
    return path


def write_stac_item(ds: xr.Dataset, t: int, assets: dict[str, Path], path: str | Path, synthetic: bool,
                    extra: dict | None = None) -> Path:
    """A STAC Item for one output period (proj + eo extensions) linking its files."""
    from pyproj import Transformer

    gb = ds.odc.geobox
    epsg = gb.crs.epsg
    x0, y0, x1, y1 = gb.extent.boundingbox
    tr = Transformer.from_crs(gb.crs.to_wkt(), 4326, always_xy=True)
    xs, ys = tr.transform([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
    label = str(ds.period.values[t])
    props = {
        "start_datetime": f"{np.datetime_as_string(ds.period_start.values[t], unit='D')}T00:00:00Z",
        "end_datetime": f"{np.datetime_as_string(ds.period_end.values[t], unit='D')}T23:59:59Z",
        "proj:code": f"EPSG:{epsg}" if epsg else None, "proj:shape": [int(ds.sizes["y"]), int(ds.sizes["x"])],
        "proj:transform": list(gb.affine)[:6], "cloudfree:synthetic_input": synthetic,
        "description": "Cloud-free composite made by cloudfree" + (" from SYNTHETIC demo data" if synthetic else ""),
        **(extra or {}),
    }
    item = pystac.Item(f"cloudfree-{label}", {"type": "Polygon", "coordinates": [[list(p) for p in zip(xs, ys)]]},
                       [min(xs), min(ys), max(xs), max(ys)], None, props)
    item.stac_extensions = ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                            "https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
    media = {".tif": pystac.MediaType.COG, ".png": pystac.MediaType.PNG, ".zarr": "application/vnd+zarr"}
    for key, p in assets.items():
        rel = os.path.relpath(p, Path(path).parent)
        item.add_asset(key, pystac.Asset(rel, media_type=media.get(Path(p).suffix), roles=["data" if key != "quicklook" else "overview"],
                                         extra_fields={"eo:bands": [{"name": str(b)} for b in ds.band.values]} if key == "cog" else {}))
    Path(path).write_text(json.dumps(item.to_dict(include_self_link=False), indent=1))
    return Path(path)
