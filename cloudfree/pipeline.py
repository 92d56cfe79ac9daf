"""The main job: search → cube (Zarr, reused) → tiled inference → Zarr mosaic → COGs, PNGs, STAC.

Every stage is resumable: the cube and the mosaic are written region by region and only marked
complete at the end; COGs/PNGs/Items are rebuilt from the finished mosaic when missing; the run
manifest ``run.json`` is written last.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import xarray as xr

from .cube.load import CubeSpec, open_cube
from .cube.store import build_cube
from .reconstruct.dataset import mosaic
from .reconstruct.periods import make_periods
from .reconstruct.tiles import TileConfig
from .models.checkpoint import default_weights
from .catalog.search import SearchRequest
from .zarrstore import write_by_regions

__all__ = ["JobConfig", "run_job", "default_weights"]


@dataclass(frozen=True)
class JobConfig:
    """Everything after the search: how to make the outputs."""

    method: str = "model"
    """``model`` or a compositing method: median, mosaicking, least_cloudy, interpolation."""
    model: str | None = None
    """Checkpoint path (default: the shipped weights)."""
    period_step: str | None = None
    """None (one image), ``month`` or ``ND``."""
    context_days: int = 30
    max_dates: int = 12
    tiles: TileConfig = field(default_factory=TileConfig)
    fill_unobserved: bool = False
    cog: bool = True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for blk in iter(lambda: f.read(1 << 20), b""):
            h.update(blk)
    return h.hexdigest()


def _encoding(ds: xr.Dataset) -> dict:
    cy, cx = ds.chunks["y"][0], ds.chunks["x"][0]
    nb = ds.sizes["band"]
    return {"reflectance": {"dtype": "float32", "chunks": (1, nb, cy, cx)},
            "clear_count": {"chunks": (1, cy, cx)}, "no_clear": {"chunks": (1, cy, cx)}}


def run_job(stac_url: str, request: SearchRequest, spec: CubeSpec, out_dir: str | Path, job: JobConfig = JobConfig(),
            *, progress=None, echo=print, stop_after: int | None = None) -> dict:
    """Run the whole job into ``out_dir``; returns the manifest (also written as ``run.json``)."""
    from .models import load_checkpoint, read_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = None
    if job.method == "model":
        model_path = Path(job.model) if job.model else default_weights()
        cfg, _ = read_config(model_path)  # fails fast on a wrong file, before any Dask work
        if list(cfg["bands"]) != list(spec.bands):
            raise ValueError(f"model {model_path} expects bands {cfg['bands']} but the cube has {list(spec.bands)}")
    # The cube spans the periods widened by the context, so edge periods see dates on both sides.
    search_req = replace(request, start=str((pd.Timestamp(request.start) - pd.Timedelta(days=job.context_days)).date()),
                         end=str((pd.Timestamp(request.end) + pd.Timedelta(days=job.context_days)).date()))
    cube_res = build_cube(stac_url, search_req, spec, out / "cube.zarr", progress=progress and progress("cube tiles"))
    echo(f"cube {cube_res.status}: {cube_res.path}")
    cube = open_cube(out / "cube.zarr")
    zones = request.aoi.utm_zones()
    echo(f"output CRS {cube.rio.crs} at {spec.resolution} m" +
         (f" (the AOI spans UTM zones {zones}; everything is reprojected to this one CRS)" if len(zones) > 1 else ""))
    periods = make_periods(cube.time.values, request.start, request.end, job.period_step, job.context_days, job.max_dates)
    if model_path is not None:
        load_checkpoint(model_path)  # full load once here: a corrupt file fails now, not inside Dask
    ds = mosaic(cube, periods, method=job.method, model_path=str(model_path) if model_path else None,
                tiles=job.tiles, chunk=spec.chunk, fill_unobserved=job.fill_unobserved)
    synthetic = json.loads(cube.attrs.get("synthetic", "false"))
    ds.attrs.update({"title": "cloudfree cloud-free mosaic", "method": job.method,
                     "model": str(model_path) if model_path else "", "synthetic_input": json.dumps(synthetic)})
    fingerprint = {"cube": json.loads(json.dumps(dict(xr.open_zarr(out / "cube.zarr").attrs.get("cloudfree:fingerprint", {})))),
                   "job": {**asdict(job), "tiles": asdict(job.tiles), "model": _sha256(model_path) if model_path else None}}
    fingerprint["job"]["tiles"].pop("device", None)
    fingerprint["job"]["tiles"].pop("batch", None)
    status = write_by_regions(ds, out / "mosaic.zarr", fingerprint, encoding=_encoding(ds),
                              batch=1 if job.tiles.device.startswith("cuda") else 2,
                              on_region=progress and progress("mosaic tiles"), stop_after=stop_after)
    if status == "interrupted":
        return {"status": "interrupted"}
    echo(f"mosaic {status}: {out / 'mosaic.zarr'}")
    res = xr.open_zarr(out / "mosaic.zarr", decode_coords="all")
    files = {}
    from .outputs.files import write_cog, write_quicklook, write_stac_item

    for t, p in enumerate(periods):
        assets = {"zarr": out / "mosaic.zarr"}
        if job.cog:
            cog = out / f"cloudfree_{p.label}.tif"
            if not cog.exists():
                write_cog(res, t, cog)
            assets["cog"] = cog
        png = out / f"cloudfree_{p.label}.png"
        write_quicklook(res, t, png)
        assets["quicklook"] = png
        item = write_stac_item(res, t, assets, out / f"cloudfree_{p.label}.stac.json", synthetic,
                               {"cloudfree:method": job.method, "cloudfree:input_dates":
                                [str(v)[:10] for v in cube.time.values[list(p.dates)]]})
        files[p.label] = {k: str(v) for k, v in {**assets, "stac_item": item}.items()}
    no_clear = int(res["no_clear"].sum().compute())
    manifest = {"status": "complete", "cube": str(out / "cube.zarr"), "mosaic": str(out / "mosaic.zarr"),
                "periods": files, "method": job.method, "model": str(model_path) if model_path else None,
                "shape": {k: int(v) for k, v in res.sizes.items()}, "crs": str(res.rio.crs),
                "pixels_without_clear_observation": no_clear, "synthetic_input": synthetic}
    (out / "run.json").write_text(json.dumps(manifest, indent=1))
    return manifest
