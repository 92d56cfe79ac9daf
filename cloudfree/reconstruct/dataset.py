"""Lazy output mosaic: for every period, the model (or a compositing method) over halo'd tiles.

Builds the graph only; :func:`cloudfree.pipeline.run_job` writes it region by region.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from .composites import composite
from .periods import Period
from .tiles import TileConfig, predict_block

__all__ = ["mosaic", "model_composite", "safe_chunks"]


def safe_chunks(n: int, chunk: int, halo: int) -> tuple[int, ...]:
    """Regular chunks of ``chunk`` whose last one is at least ``halo`` (merged into its neighbour
    otherwise): dask's overlap needs every chunk >= the depth."""
    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    while len(sizes) > 1 and sizes[-1] < halo:
        last = sizes.pop()
        sizes[-1] += last
    return tuple(sizes)


def model_composite(refl: xr.DataArray, clear: xr.DataArray, period: Period, model_path: str,
                    tiles: TileConfig, chunk: int) -> xr.DataArray:
    """(band, y, x) model output for one period, lazily; refl (time, band, y, x), clear (time, y, x)."""
    sub_r = refl.isel(time=list(period.dates))
    sub_c = clear.isel(time=list(period.dates))
    ny, nx = refl.sizes["y"], refl.sizes["x"]
    halo = tiles.halo
    if min(ny, nx) < 1:
        raise ValueError("empty spatial extent")
    cy, cx = safe_chunks(ny, chunk, halo), safe_chunks(nx, chunk, halo)
    xr_ = sub_r.data.rechunk({0: -1, 1: -1, 2: cy, 3: cx})
    cm = sub_c.data.astype(bool).rechunk({0: -1, 1: cy, 2: cx})
    # Halo by mirror reflection at the image edges, as map_overlap would; small images are padded
    # first so the halo never exceeds a chunk.
    depth_x = {0: 0, 1: 0, 2: halo, 3: halo}
    depth_m = {0: 0, 1: halo, 2: halo}
    if min(min(cy), min(cx)) < halo:
        raise ValueError(f"tiles of {min(min(cy), min(cx))} px are smaller than the halo ({halo}); "
                         f"use a larger chunk or a smaller patch")
    ext_x = da.overlap.overlap(xr_, depth=depth_x, boundary={2: "reflect", 3: "reflect"})
    ext_m = da.overlap.overlap(cm, depth=depth_m, boundary={1: "reflect", 2: "reflect"})
    dt = (sub_r.time.values.astype("datetime64[D]").astype(float) - period.target_day).astype(np.float32)
    nb = sub_r.sizes["band"]
    out = da.map_blocks(predict_block, ext_x, ext_m, dt=dt, model_path=model_path, cfg=tiles,
                        dtype=np.float32, chunks=((nb,), cy, cx), drop_axis=0,
                        meta=np.empty((0, 0, 0), np.float32), name=f"cloudfree-predict-{period.label}")
    return xr.DataArray(out, dims=("band", "y", "x"), coords={"band": refl.band, "y": refl.y, "x": refl.x})


def mosaic(cube: xr.Dataset, periods: list[Period], *, method: str = "model", model_path: str | None = None,
           tiles: TileConfig = TileConfig(), chunk: int = 1024, fill_unobserved: bool = False) -> xr.Dataset:
    """The output Dataset (lazy): ``reflectance(time, band, y, x)``, ``clear_count(time, y, x)``,
    ``no_clear(time, y, x)``; ``time`` is each period's centre."""
    refl, clear = cube["reflectance"], cube["clear"]
    imgs, counts = [], []
    for p in periods:
        if method == "model":
            if model_path is None:
                raise ValueError("method 'model' needs a checkpoint path")
            img = model_composite(refl, clear, p, model_path, tiles, chunk)
        else:
            img = composite(method, refl.isel(time=list(p.dates)), clear.isel(time=list(p.dates)), p.target_day)
        usable = clear.isel(time=list(p.dates)).astype(bool) & refl.isel(time=list(p.dates)).notnull().all("band")
        n = usable.sum("time").astype(np.uint16)
        if not fill_unobserved:
            img = img.where(n > 0)  # never invent a value where nothing clear was seen
        imgs.append(img)
        counts.append(n)
    times = np.array([np.datetime64(int(round(p.target_day)), "D") for p in periods]).astype("datetime64[ns]")
    tcoord = xr.DataArray(times, dims="time", name="time")
    out_refl = xr.concat(imgs, dim=tcoord).astype(np.float32)
    cnt = xr.concat(counts, dim=tcoord)
    ds = xr.Dataset({
        "reflectance": out_refl.assign_attrs(units="1", long_name="cloud-free surface reflectance"),
        "clear_count": cnt.assign_attrs(long_name="number of clear observations used"),
        "no_clear": (cnt == 0).astype(np.uint8).assign_attrs(long_name="1 where no clear observation existed"),
    })
    ds = ds.assign_coords(period=("time", [p.label for p in periods]),
                          period_start=("time", np.array([p.start for p in periods]).astype("datetime64[ns]")),
                          period_end=("time", np.array([p.end for p in periods]).astype("datetime64[ns]")))
    if "spatial_ref" in cube.coords:
        ds = ds.assign_coords(spatial_ref=cube.spatial_ref)
    halo = tiles.halo if method == "model" else 0
    cy, cx = safe_chunks(ds.sizes["y"], chunk, halo), safe_chunks(ds.sizes["x"], chunk, halo)
    return ds.chunk({"time": 1, "band": -1, "y": cy, "x": cx})
