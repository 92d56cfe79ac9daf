"""Write what users open: COGs per period, an RGB quicklook PNG, and STAC Items for the outputs.

Everything is read back from the finished output Zarr window by window, so memory stays bounded
whatever the AOI size (the quicklook is coarsened lazily to at most 1024 px); files are written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pystac
import rasterio
import rasterio.enums
import xarray as xr

from ..bands import RGB, S2_BANDS

__all__ = ["write_cog", "CogWriter", "write_quicklook", "write_stac_item", "rgb_image", "cog_is_current", "COG_SCALE"]

COG_SCALE = 1e-4
"""Reflectance = DN × 1e-4 (offset 0) in the output COGs; DN 0 is nodata."""
_INFO = {b.id: b for b in S2_BANDS}


def write_cog(ds: xr.Dataset, t: int, path: str | Path, tags: dict | None = None) -> Path:
    """One period as a COG: uint16 DN with band scale 1e-4 / offset 0 and nodata 0 in the band
    metadata (``rioxarray.open_rasterio(mask_and_scale=True)`` and QGIS read reflectance), band
    descriptions = band ids, deflate + PREDICTOR=2, 256 px tiles, overviews (even for small outputs).

    Streams: the Zarr is copied block by block (read and converted on all cores, a bounded number
    ahead) into a tiled GeoTIFF, which GDAL's COG driver then copies with overviews, compressing on
    all cores, so memory stays flat whatever the area (the whole image is never held).
    Written to ``<name>.part`` and renamed when complete. :class:`CogWriter` does the same while
    the Zarr is still being written.
    """
    writer = CogWriter(ds, t, path)
    return writer.finish(ds, tags)


class CogWriter:
    """One period's COG, staged while its Zarr is written: :meth:`add` hands over a region as soon
    as it is on disk, a thread here copies it into the tiled staging GeoTIFF, and :meth:`finish`
    copies what is left and lets GDAL's COG driver add the overviews. On a whole Sentinel-2 tile
    the staging took 10 s after the mosaic (``benchmarks/results/profile_run_h100.jsonl``); now it
    overlaps the computation."""

    def __init__(self, ds: xr.Dataset, t: int, path: str | Path):
        import queue
        import threading

        self.path, self.t = Path(path), t
        self.staging = self.path.with_name(self.path.name + ".staging.tif")
        refl = ds["reflectance"].isel(time=t)
        self.nb, self.ny, self.nx = refl.shape
        self.cy = refl.chunks[1][0] if refl.chunks else 1024
        self.cx = refl.chunks[2][0] if refl.chunks else 1024
        geobox = ds.odc.geobox
        profile = dict(driver="GTiff", width=self.nx, height=self.ny, count=self.nb, dtype="uint16", nodata=0,
                       crs=geobox.crs.to_wkt(), transform=geobox.affine, tiled=True, blockxsize=256, blockysize=256,
                       compress="ZSTD", bigtiff="IF_SAFER")
        self.dst = rasterio.open(self.staging, "w", **profile, num_threads="ALL_CPUS")
        self.done: set[tuple[int, int]] = set()
        self.error: BaseException | None = None
        self.zarr = None
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._drain, daemon=True, name=f"cog-{self.path.name}")
        self.thread.start()

    def add(self, region: dict, zarr_path: str | Path) -> None:
        """A region ({"time", "y", "x"} slices) of the Zarr at ``zarr_path`` is written: stage it."""
        if region.get("time", slice(self.t, self.t + 1)).start != self.t:
            return
        self.queue.put((region["y"].start, region["x"].start, str(zarr_path)))

    def _block(self, refl: xr.DataArray, y0: int, x0: int) -> np.ndarray:
        win = refl[:, y0 : y0 + self.cy, x0 : x0 + self.cx].compute(scheduler="synchronous").values
        return np.where(np.isfinite(win), np.clip(np.round(win / COG_SCALE), 1, 65535), 0).astype(np.uint16)

    def _put(self, y0: int, x0: int, dn: np.ndarray) -> None:
        from rasterio.windows import Window

        self.dst.write(dn, window=Window(x0, y0, dn.shape[2], dn.shape[1]))
        self.done.add((y0, x0))

    def _drain(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.error is not None:
                continue
            try:
                y0, x0, zpath = job
                if self.zarr is None:
                    self.zarr = xr.open_zarr(zpath, consolidated=False)["reflectance"].isel(time=self.t)
                self._put(y0, x0, self._block(self.zarr, y0, x0))
            except BaseException as exc:  # noqa: BLE001  (finish() redoes the region and raises if it fails again)
                self.error = exc

    def abort(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.dst.close()
        self.staging.unlink(missing_ok=True)

    def finish(self, ds: xr.Dataset, tags: dict | None = None) -> Path:
        """Stage the regions not staged yet (read and converted on all cores), then the COG."""
        from concurrent.futures import ThreadPoolExecutor

        import rasterio.shutil

        self.queue.put(None)
        self.thread.join()
        refl = ds["reflectance"].isel(time=self.t)
        part = self.path.with_name(self.path.name + ".part")
        levels = min(max(2, int(np.ceil(np.log2(max(self.ny, self.nx) / 256))) + 1),
                     int(np.floor(np.log2(min(self.ny, self.nx)))))
        todo = [(y0, x0) for y0 in range(0, self.ny, self.cy) for x0 in range(0, self.nx, self.cx)
                if (y0, x0) not in self.done]
        threads = os.cpu_count() or 1
        try:
            with self.dst, ThreadPoolExecutor(threads) as pool:
                for i in range(0, len(todo), 2 * threads):  # bounded read-ahead: memory stays flat
                    for (y0, x0), dn in pool.map(lambda w: (w, self._block(refl, *w)), todo[i : i + 2 * threads]):
                        self._put(y0, x0, dn)
                self.dst.scales = (COG_SCALE,) * self.nb
                self.dst.offsets = (0.0,) * self.nb
                self.dst.descriptions = tuple(str(b) for b in ds.band.values)
                self.dst.update_tags(period=str(ds.period.values[self.t]), software="cloudfree", **(tags or {}))
            rasterio.shutil.copy(self.staging, part, driver="COG", COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE="256",
                                 BIGTIFF="IF_SAFER", OVERVIEW_RESAMPLING="AVERAGE", OVERVIEW_COUNT=str(max(levels, 0)),
                                 NUM_THREADS="ALL_CPUS")
            os.replace(part, self.path)
        finally:
            self.staging.unlink(missing_ok=True)
            part.unlink(missing_ok=True)
        return self.path


def cog_is_current(path: str | Path, digest: str) -> bool:
    """True when ``path`` is a COG this run's outputs wrote (same fingerprint digest in its tags):
    a COG left from another method or catalog is never reused."""
    try:
        with rasterio.open(path) as src:
            return src.tags().get("cloudfree_fingerprint") == digest
    except Exception:
        return False


def rgb_image(refl: xr.DataArray, max_side: int = 1024, gain: float = 3.5) -> np.ndarray:
    """(H, W, 3) uint8 true-colour picture from (band, y, x) reflectance, coarsened lazily; with
    fewer than the three RGB bands, the first band as grey."""
    present = [b for b in RGB if b in refl.band.values]
    rgb = refl.sel(band=present) if len(present) == 3 else refl.isel(band=[0, 0, 0])
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
    """The picture from a COG's overviews (GDAL averages them when the COG is written): no pass
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
    img.save(path)
    return path


def _utc(day: np.datetime64, end: bool = False):
    import datetime as dt

    d = dt.datetime.fromisoformat(np.datetime_as_string(day, unit="D"))
    if end:
        d = d.replace(hour=23, minute=59, second=59)
    return d.replace(tzinfo=dt.timezone.utc)


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
    media = {".png": pystac.MediaType.PNG, ".zarr": "application/vnd+zarr"}
    roles = {"quicklook": ["overview"], "zarr": ["data"]}
    for key, p in assets.items():
        if key == "cog":
            continue
        item.add_asset(key, pystac.Asset(os.path.relpath(p, path.parent), media_type=media.get(Path(p).suffix),
                                         roles=roles.get(key, ["metadata"])))
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=1))
    os.replace(tmp, path)
    return item
