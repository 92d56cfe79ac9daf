"""Convert the real series of ``../shared/data/more-real`` into one static STAC catalog (REAL data).

    pip install h5netcdf   # reads the FuseTS NetCDF files
    python benchmarks/more_real_catalog.py --out bench-out/more-real   # then: catalog.json

The sources ship as NetCDF (openEO / FuseTS) and per-date GeoTIFFs (HLS); none is a STAC catalog.
Each date becomes one item with a COG per band (uint16 DN, scale 0.0001, nodata 0, as the
``real-s2-l2a`` catalog) and an ``SCL`` COG. These series carry **gaps, not cloudy values**: the
providers set masked pixels to NaN. Such a pixel is written as nodata with SCL 9 (cloud, high
probability: the gap was a cloud or shadow mask), so the real-clouds protocol hides clear pixels
under another date's real gap shape. Pixels that are NaN on every date (outside a field polygon)
get SCL 0 (no data).

Collections:
- ``fusets_slovenia_meadow_2021``: SE Slovenia meadow, 58 dates, B04 B08 (L2A), 10 m.
- ``fusets_spain_field_2019``: Castilla y León dry cropland, 33 dates, B04 B08 (L2A), 10 m.
- ``hls_missouri_2023``: central Missouri cropland, the 25 HLS S30 (Sentinel-2) dates, blue green
  red NIR-narrow as B02 B03 B04 B8A, 30 m. HLS S30 is NASA's harmonised surface reflectance
  (LaSRC, Fmask), not Sen2Cor L2A: say so beside L2A results.
Provenance of each source: its ``PROVENANCE.md`` in ``../shared/data/more-real``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MORE = ROOT.parent / "shared" / "data" / "more-real"
EXTENSIONS = ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
              "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
              "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]
WAVELENGTH = {"B02": ("blue", 0.49), "B03": ("green", 0.56), "B04": ("red", 0.665), "B08": ("nir", 0.842),
              "B8A": ("nir08", 0.865)}


def _write_cog(path: Path, data: np.ndarray, transform, crs: str, nodata: int) -> None:
    import rasterio

    profile = {"driver": "COG", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": data.dtype.name,
               "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate", "blocksize": 256}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _dn(v: np.ndarray, factor: float) -> np.ndarray:
    """Reflectance × ``factor`` → uint16 DN with 0 as nodata (NaN → 0; real zeros → 1)."""
    out = np.where(np.isfinite(v), np.clip(np.round(v * factor), 1, 65535), 0)
    return out.astype(np.uint16)


def _item(collection: str, day: str, bands: dict[str, np.ndarray], scl: np.ndarray, transform, crs: str, res: float,
          folder: Path, level: str):
    """One item: a COG per band and SCL, with proj, eo and raster metadata."""
    import pystac
    from odc.geo.geobox import GeoBox
    from rasterio.transform import Affine

    iid = f"{collection}_{day.replace('-', '')}"
    d = folder / iid
    d.mkdir(parents=True, exist_ok=True)
    gb = GeoBox(scl.shape, Affine(*transform[:6]), crs)
    poly = gb.extent.to_crs("EPSG:4326")
    item = pystac.Item(iid, json.loads(json.dumps(poly.json)), list(poly.boundingbox),
                       dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc),
                       {"platform": "sentinel-2", "processing:level": level, "proj:code": crs,
                        "proj:epsg": int(crs.split(":")[1]), "eo:cloud_cover": float(100 * np.isin(scl, [9]).mean())},
                       collection=collection, stac_extensions=EXTENSIONS)
    for name, arr in {**bands, "SCL": scl}.items():
        nodata = 0
        _write_cog(d / f"{name}.tif", arr, Affine(*transform[:6]), crs, nodata)
        extra = {"proj:shape": list(arr.shape), "proj:transform": list(transform[:6])}
        if name == "SCL":
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint8", "spatial_resolution": res}]
        else:
            cn, wl = WAVELENGTH[name]
            extra["eo:bands"] = [{"name": name, "common_name": cn, "center_wavelength": wl}]
            extra["raster:bands"] = [{"nodata": 0, "data_type": "uint16", "spatial_resolution": res, "scale": 0.0001,
                                      "offset": 0.0}]
        item.add_asset(name, pystac.Asset(f"./{name}.tif", media_type=pystac.MediaType.COG, roles=["data"],
                                          extra_fields=extra))
    return item


def _scl(valid: np.ndarray, scl_values: np.ndarray | None, ever: np.ndarray) -> np.ndarray:
    """SCL: the provider's class where valid, 9 in a gap, 0 where no date has data."""
    out = np.where(valid, np.nan_to_num(scl_values, nan=4).astype(np.uint8) if scl_values is not None else 4, 9)
    return np.where(ever, out, 0).astype(np.uint8)


def fusets(name: str, collection: str, folder: Path) -> list:
    import xarray as xr

    ds = xr.open_dataset(MORE / "fusets-openeo-b04b08scl" / name, engine="h5netcdf")
    x, y = ds.x.values, ds.y.values
    res = float(x[1] - x[0])
    transform = [res, 0.0, float(x[0] - res / 2), 0.0, -res, float(y[0] + res / 2)]
    epsg = {"s2_meadow_slovenia_2021.nc": "EPSG:32633", "raw_s2_field_spain_2019.nc": "EPSG:32630"}[name]
    b04, b08, scl = ds.B04.values, ds.B08.values, ds.SCL.values
    ever = np.isfinite(b04).any(0)
    items = []
    for t, day in enumerate(str(v)[:10] for v in ds.t.values):
        valid = np.isfinite(b04[t]) & np.isfinite(b08[t])
        items.append(_item(collection, day, {"B04": _dn(b04[t], 1.0), "B08": _dn(b08[t], 1.0)},
                           _scl(valid, scl[t], ever), transform, epsg, res, folder, "L2A"))
    return items


def hls(collection: str, folder: Path) -> list:
    import rasterio

    base = MORE / "hls-missouri-s30-25dates"
    meta = json.loads((base / "series.json").read_text())
    files = {"B02": "B02", "B03": "B03", "B04": "B04", "B8A": "NIR"}
    days = sorted(p.name for p in (base / "images").iterdir() if any(p.glob("*_S30_*")))
    stacks = {}
    for day in days:
        arrs = {}
        for band, suffix in files.items():
            f = next((base / "images" / day).glob(f"*_S30_*_{suffix}.tif"))
            with rasterio.open(f) as src:
                arrs[band] = src.read(1).astype(np.float32)
        stacks[day] = arrs
    ever = np.any([np.isfinite(a["B04"]) for a in stacks.values()], axis=0)
    top = np.nanmax([np.nanmax(a["B04"]) for a in stacks.values() if np.isfinite(a["B04"]).any()])
    scale = 10000.0 if top < 5 else 1.0  # float reflectance or already ×10000
    items = []
    for day, arrs in stacks.items():
        valid = np.all([np.isfinite(a) for a in arrs.values()], axis=0)
        iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
        items.append(_item(collection, iso, {b: _dn(a, scale) for b, a in arrs.items()}, _scl(valid, None, ever),
                           meta["transform"], meta["crs"], 30.0, folder, "HLS S30 (LaSRC surface reflectance)"))
    return items


def main(argv=None) -> Path:
    import pystac

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "more-real"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    if not MORE.exists():
        sys.exit(f"{MORE} is absent: this needs ../shared/data/more-real beside the repository")
    cat = pystac.Catalog("more-real", "Real series of ../shared/data/more-real as COGs (gaps as SCL 9)")
    makers = {"fusets_slovenia_meadow_2021": lambda f: fusets("s2_meadow_slovenia_2021.nc", "fusets_slovenia_meadow_2021", f),
              "fusets_spain_field_2019": lambda f: fusets("raw_s2_field_spain_2019.nc", "fusets_spain_field_2019", f),
              "hls_missouri_2023": lambda f: hls("hls_missouri_2023", f)}
    for cid, make in makers.items():
        folder = out / cid
        items = make(folder)
        ext = pystac.Extent(pystac.SpatialExtent([list(items[0].bbox)]),
                            pystac.TemporalExtent([[items[0].datetime, items[-1].datetime]]))
        col = pystac.Collection(cid, f"{cid} (real; see benchmarks/more_real_catalog.py)", ext, license="other")
        col.add_items(items)
        cat.add_child(col)
    cat.normalize_hrefs(str(out))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    print(json.dumps({"catalog": str(out / "catalog.json"), "collections": list(makers)}))
    return out / "catalog.json"


if __name__ == "__main__":
    main()
