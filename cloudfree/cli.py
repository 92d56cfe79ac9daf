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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
