"""``cloudfree`` command line: thin wrappers over the library functions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from .progress import console

app = typer.Typer(help="Cloud-free Sentinel-2 imagery from image time series, on xarray and Dask.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

STAC_HELP = "STAC API URL, 'earth-search', 'planetary-computer', 'demo', or a local .json/.ndjson/.parquet file"


def _aoi(bbox: Optional[str], aoi: Optional[str]):
    from .aoi import parse_aoi, parse_bbox

    if (bbox is None) == (aoi is None):
        raise typer.BadParameter("give exactly one of --bbox or --aoi")
    return parse_bbox(bbox) if bbox else parse_aoi(aoi)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


@app.command("demo-data")
def demo_data(out: Path = typer.Option(Path("cloudfree-demo/catalog"), help="folder for COGs + items.json"),
              size: int = typer.Option(300, help="side in 10 m pixels (multiple of 6)"),
              dates: int = typer.Option(24, help="number of acquisition dates"),
              seed: int = typer.Option(42)) -> None:
    """Write the SYNTHETIC demo catalog (COGs + STAC items)."""
    from .demo.catalog import DemoSpec, write_demo_catalog

    path = write_demo_catalog(out, DemoSpec(size=size, n_dates=dates, seed=seed))
    console.print(f"wrote SYNTHETIC demo catalog: {path}")


@app.command()
def search(stac: str = typer.Option("demo", help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help="west,south,east,north"),
           aoi: Optional[str] = typer.Option(None, help="GeoJSON file or string"),
           start: str = typer.Option(...), end: str = typer.Option(...),
           collection: str = "sentinel-2-l2a", max_cloud: Optional[float] = None) -> None:
    """List the items a search finds."""
    from .catalog import open_catalog
    from .stac import SearchRequest
    from .stac import search as do_search

    try:
        req = SearchRequest(_aoi(bbox, aoi), start, end, collection, max_cloud)
        with open_catalog(stac) as url:
            items = do_search(url, req)
    except (ValueError, LookupError, RuntimeError) as exc:
        _fail(exc)
    for it in items:
        typer.echo(f"{it.id}\t{it.datetime:%Y-%m-%d}\tcloud={it.properties.get('eo:cloud_cover', float('nan')):.1f}%")


def _cluster(scheduler, workers, threads, processes):
    from .cluster import ClusterConfig

    return ClusterConfig(scheduler=scheduler, n_workers=workers, threads_per_worker=threads, processes=processes)


@app.command()
def cube(stac: str = typer.Option("demo", help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help="west,south,east,north"),
         aoi: Optional[str] = typer.Option(None, help="GeoJSON file or string"),
         start: str = typer.Option(...), end: str = typer.Option(...), out: Path = typer.Option(...),
         collection: str = "sentinel-2-l2a", max_cloud: Optional[float] = None,
         bands: Optional[str] = typer.Option(None, help="comma-separated band ids or common names (default: 12 L2A bands)"),
         crs: Optional[str] = typer.Option(None, help="output CRS (default: the AOI's UTM zone)"),
         resolution: float = 10.0, chunk: int = 512,
         scheduler: Optional[str] = typer.Option(None, help="join an existing Dask scheduler"),
         workers: Optional[int] = None, threads: Optional[int] = None, processes: bool = False) -> None:
    """Search a catalog and write the time cube (reflectance + clear mask) to Zarr."""
    from .catalog import open_catalog
    from .cluster import dask_client
    from .cube import CubeSpec
    from .cubestore import build_cube
    from .progress import tile_progress
    from .stac import SearchRequest
    from .bands import validate_bands

    try:
        req = SearchRequest(_aoi(bbox, aoi), start, end, collection, max_cloud)
        spec = CubeSpec(bands=validate_bands(bands.split(",") if bands else None), crs=crs, resolution=resolution, chunk=chunk)
        with open_catalog(stac) as url, dask_client(_cluster(scheduler, workers, threads, processes), echo=console.print), \
                tile_progress("cube tiles") as progress:
            res = build_cube(url, req, spec, out, progress=progress)
    except (ValueError, LookupError, RuntimeError, OSError) as exc:
        _fail(exc)
    console.print(f"cube {res.status}: {res.path} {json.dumps(res.shape)} from {res.n_items} items")


def _run(stac: str, req_args: dict, spec_args: dict, out: Path, job_args: dict, cluster, echo_demo: bool = False) -> dict:
    from .catalog import open_catalog
    from .cluster import dask_client
    from .cube import CubeSpec
    from .infer.tiles import TileConfig, resolve_device
    from .job import JobConfig, run_job
    from .progress import StageProgress
    from .stac import SearchRequest

    req = SearchRequest(**req_args)
    spec = CubeSpec(**spec_args)
    device = resolve_device(job_args.pop("device"))
    tiles = TileConfig(patch=job_args.pop("patch"), overlap=job_args.pop("overlap"), batch=job_args.pop("batch"), device=device)
    job = JobConfig(tiles=tiles, **job_args)
    if device.startswith("cuda") and cluster.threads_per_worker is None:
        from dataclasses import replace

        cluster = replace(cluster, threads_per_worker=1)  # one thread drives one GPU
    console.print(f"inference device: {device}")
    with open_catalog(stac) as url, dask_client(cluster, echo=console.print), StageProgress() as progress:
        return run_job(url, req, spec, out, job, progress=progress, echo=console.print)


@app.command()
def run(stac: str = typer.Option("demo", help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help="west,south,east,north"),
        aoi: Optional[str] = typer.Option(None, help="GeoJSON file or string"),
        start: str = typer.Option(...), end: str = typer.Option(...), out: Path = typer.Option(...),
        model: Optional[str] = typer.Option(None, help="checkpoint (.safetensors); default: the shipped weights"),
        method: str = typer.Option("model", help="model | median | mosaicking | least_cloudy | interpolation"),
        period: Optional[str] = typer.Option(None, help="one image (default), 'month', or 'ND' e.g. '16D'"),
        context_days: int = 30, max_dates: int = 12,
        collection: str = "sentinel-2-l2a", max_cloud: Optional[float] = None,
        crs: Optional[str] = None, resolution: float = 10.0, chunk: int = 512,
        patch: int = 256, overlap: int = 32, batch: int = 8,
        device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
        fill_unobserved: bool = typer.Option(False, help="keep the model's spatial guess where nothing clear was seen"),
        scheduler: Optional[str] = None, workers: Optional[int] = None, threads: Optional[int] = None,
        processes: bool = False) -> None:
    """The main job: search → cube → cloud-free mosaic (Zarr + COG + PNG + STAC Item)."""
    try:
        res = _run(stac, dict(aoi=_aoi(bbox, aoi), start=start, end=end, collection=collection, max_cloud_cover=max_cloud),
                   dict(crs=crs, resolution=resolution, chunk=chunk), out,
                   dict(method=method, model=model, period_step=period, context_days=context_days, max_dates=max_dates,
                        fill_unobserved=fill_unobserved, device=device, patch=patch, overlap=overlap, batch=batch),
                   _cluster(scheduler, workers, threads, processes))
    except (ValueError, LookupError, RuntimeError, OSError) as exc:
        _fail(exc)
    console.print(f"[green]done[/]: {out / 'run.json'}")
    for label, files in res["periods"].items():
        console.print(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in files.items()))


@app.command()
def demo(out: Path = typer.Option(Path("cloudfree-demo/output"), help="output folder"),
         device: str = typer.Option("auto", help="auto | cpu | cuda"),
         method: str = "model") -> None:
    """Run the whole job on the bundled SYNTHETIC demo catalog with the shipped weights."""
    from .demo.catalog import DEMO_SPEC, write_demo_catalog
    from .catalog import DEFAULT_DEMO_DIR

    items = write_demo_catalog(DEFAULT_DEMO_DIR / "catalog")
    fc = json.loads(items.read_text())
    west = min(f["bbox"][0] for f in fc["features"]); south = min(f["bbox"][1] for f in fc["features"])
    east = max(f["bbox"][2] for f in fc["features"]); north = max(f["bbox"][3] for f in fc["features"])
    pad = 0.002  # stay inside the synthetic footprint
    bbox = f"{west + pad},{south + pad},{east - pad},{north - pad}"
    dates = sorted(f["properties"]["datetime"][:10] for f in fc["features"])
    console.print(f"[yellow]SYNTHETIC[/] demo catalog ({len(dates)} dates, {DEMO_SPEC.size}x{DEMO_SPEC.size} px at 10 m) "
                  f"bbox={bbox} {dates[0]}..{dates[-1]}")
    run(stac="demo", bbox=bbox, aoi=None, start="2024-06-01", end="2024-08-31", out=out, model=None, method=method,
        period=None, context_days=45, max_dates=12, collection="sentinel-2-l2a", max_cloud=None, crs=None,
        resolution=10.0, chunk=512, patch=256, overlap=32, batch=8, device=device, fill_unobserved=False,
        scheduler=None, workers=None, threads=None, processes=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
