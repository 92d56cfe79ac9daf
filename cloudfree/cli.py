"""``cloudfree`` command line: thin wrappers over the library functions."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from .errors import CloudfreeError
from .progress import console

app = typer.Typer(help="Cloud-free Sentinel-2 imagery from image time series, on xarray and Dask.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

STAC_HELP = ("STAC API URL, 'earth-search', 'planetary-computer', 'demo' (SYNTHETIC), a static catalog or collection "
             "(catalog.json / collection.json, path or file:// or https URL) or an item file (.json/.ndjson/.parquet)")
BANDS_HELP = ("comma-separated band ids or common names, e.g. B02,B03,B04,B08 or red,nir "
              "(default: every L2A band the catalog has, in canonical order)")
COLLECTION_HELP = "collection id (default: sentinel-2-l2a where the catalog has it, else its only collection)"
NATIVE_HELP = ("read 20 m / 60 m bands and SCL on their own grid and enlarge them in numpy as GDAL's warp would "
               "(equal within 1 DN): faster with few cores (1.9x on 2), not yet with 16 (benchmarks/RESULTS.md)")
RESOLUTION_HELP = "output pixel size in metres (default: the finest native resolution of the bands, e.g. 20 for a 20 m-only set)"
SCL_HELP = ("SCL classes that make a pixel unusable, comma-separated codes 0-11 (default 0,1,3,8,9,10: no data, defective, "
            "cloud shadow, cloud medium/high, cirrus). SCL often labels cloud as 7 (unclassified) or 11 (snow): add 7,11 "
            "where no real snow is expected. The classes used are recorded in every output")
MASK_HELP = ("which cloud mask decides the clear observations: scl (the SCL classes of --exclude-scl), model (a learned "
             "cloud + shadow mask, ukis-csmask; needs B02,B03,B04,B08 and pip install 'cloudfree[masks]') or both "
             "(their union); without those bands: SCL, with a warning")
DILATE_HELP = "grow the unusable pixels by this many pixels (cloud edges and margins the masks leave out)"
START_HELP = "first date, YYYY-MM-DD (inclusive)"
END_HELP = "last date, YYYY-MM-DD (inclusive; not before --start)"
BBOX_HELP = "west,south,east,north in degrees (EPSG:4326, lon/lat order)"
AOI_HELP = "area as a GeoJSON file or string (Polygon, MultiPolygon, Feature or FeatureCollection; EPSG:4326)"
CLOUD_HELP = "drop scenes whose eo:cloud_cover is above this percentage (0-100; default: keep all)"
CRS_HELP = "output CRS, e.g. EPSG:32632 (default: the UTM zone of the area's centre)"
CHUNK_HELP = "block side in pixels for the cube and the inference tiles (default: chosen from --memory-limit)"
MEMORY_HELP = ("memory budget for the run, e.g. 4GB or 2GiB (default 'auto': 80 % of this machine's memory); the block "
               "size and how many blocks run at once are chosen to stay under it, whatever the area")
DEVICE_HELP = "where the model runs: auto (cuda if available, else cpu) | cpu | cuda | cuda:N"
WORKERS_HELP = ("local Dask workers (default: 1 worker with threads; 2 with --processes); with --gpus: CPU decode "
                "workers beside the GPU workers (default 0), the model's tasks staying on the GPU workers")
THREADS_HELP = "threads per local Dask worker (default: all cores, split among GPU workers with --gpus; reads and decodes use them all while the GPU work of a worker is serialised)"
PROCESSES_HELP = "local workers as processes instead of threads (each loads its own model; for large CPU runs)"
SCHEDULER_HELP = ("join an existing Dask cluster instead of starting a local one: a scheduler address (tcp://host:8786) or "
                  "a scheduler file (.json, as dask scheduler --scheduler-file, dask-jobqueue or dask-mpi write)")
DASHBOARD_HELP = "host:port of the local cluster's dashboard (0.0.0.0:8787 to reach it from other machines)"
VALIDATE_HELP = ("measure every candidate (the model, each compositing method) on clear pixels of the run's own series "
                 "hidden under real clouds, per period; with --method auto use what validated best (or a blend). Scores "
                 "go to run.json, the Zarr and the STAC Items, with a calibrated uncertainty layer")
METHOD_HELP = ("auto (the model where it serves the bands, else median) | model | median | mosaicking | least_cloudy | "
               "interpolation")


def _aoi(bbox: Optional[str], aoi: Optional[str], stac: str = ""):
    """The area; optional for static catalogs and item files (then: every item, on its own grid)."""
    from .catalog.sources import is_static_source
    from .job import parse_area

    return parse_area(bbox, aoi, optional=bool(stac) and is_static_source(stac))


REPORTED = (CloudfreeError, ValueError, LookupError, RuntimeError, OSError, ImportError)
"""What a command reports as one line (``--verbose`` for the traceback): cloudfree's own errors,
and the built-in ones its library raises where no cloudfree kind is named yet."""


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


def _interrupted(out: Path | None) -> None:
    """Ctrl-C: one line saying what is kept and how to go on, no traceback."""
    where = f"everything finished so far is kept in {out}; " if out else ""
    console.print(f"[yellow]interrupted:[/] {where}run the same command again to resume where it stopped")
    raise typer.Exit(code=130)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress messages of Dask and the libraries")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


@app.command("demo-data")
def demo_data(out: Path = typer.Option(Path("cloudfree-demo/catalog"), help="folder for COGs + items.json"),
              size: int = typer.Option(300, help="side in 10 m pixels (multiple of 6)", min=6),
              dates: int = typer.Option(24, help="number of acquisition dates", min=1),
              seed: int = typer.Option(42, help="random seed (the same seed writes the same catalog)")) -> None:
    """Write the SYNTHETIC demo catalog (COGs + STAC items)."""
    from .catalog.demo import DemoSpec, write_demo_catalog

    try:
        path = write_demo_catalog(out, DemoSpec(size=size, n_dates=dates, seed=seed))
    except (ValueError, OSError) as exc:
        _fail(exc)
    console.print(f"wrote SYNTHETIC demo catalog: {path}")


@app.command()
def search(stac: str = typer.Option(..., help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help=BBOX_HELP),
           aoi: Optional[str] = typer.Option(None, help=AOI_HELP),
           start: str = typer.Option(..., help=START_HELP), end: str = typer.Option(..., help=END_HELP),
           collection: Optional[str] = typer.Option(None, help=COLLECTION_HELP),
           max_cloud: Optional[float] = typer.Option(None, help=CLOUD_HELP, min=0, max=100)) -> None:
    """List the items a search finds."""
    from .catalog.sources import search_items

    try:
        items = search_items(stac, start, end, aoi=_aoi(bbox, aoi, stac), collection=collection, max_cloud_cover=max_cloud)
    except (ValueError, LookupError, RuntimeError) as exc:
        _fail(exc)
    for it in items:
        typer.echo(f"{it.id}\t{it.datetime:%Y-%m-%d}\tcloud={it.properties.get('eo:cloud_cover', float('nan')):.1f}%")


def _mask(exclude_scl: str, mask: str = "scl", dilate: int = 0):
    """``--exclude-scl 0,1,3,8,9,10,11 --mask both --dilate 2`` → MaskConfig."""
    from .cube.load import MaskConfig

    return MaskConfig.from_classes(exclude_scl, source=mask, dilate=dilate)


def _cluster(scheduler, workers, threads, processes, dashboard_address: str = "127.0.0.1:0", gpus: Optional[str] = None):
    from .cluster import ClusterConfig, parse_gpus

    ids = parse_gpus(gpus)
    if ids and scheduler:
        raise ValueError("give --gpus (a local cluster, one worker per GPU) or --scheduler (an existing cluster), not both")
    return ClusterConfig(scheduler=scheduler, n_workers=workers, threads_per_worker=threads, processes=processes,
                         dashboard_address=dashboard_address, gpus=ids)


@app.command()
def cube(stac: str = typer.Option(..., help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help=BBOX_HELP),
         aoi: Optional[str] = typer.Option(None, help=AOI_HELP),
         start: str = typer.Option(..., help=START_HELP), end: str = typer.Option(..., help=END_HELP),
         out: Path = typer.Option(..., help="cube store to write (a .zarr folder; resumes an interrupted one)"),
         collection: Optional[str] = typer.Option(None, help=COLLECTION_HELP),
         max_cloud: Optional[float] = typer.Option(None, help=CLOUD_HELP, min=0, max=100),
         bands: Optional[str] = typer.Option(None, help=BANDS_HELP),
         crs: Optional[str] = typer.Option(None, help=CRS_HELP),
         resolution: Optional[float] = typer.Option(None, help=RESOLUTION_HELP, min=0.01),
         chunk: Optional[int] = typer.Option(None, help=CHUNK_HELP, min=16),
         memory_limit: str = typer.Option("auto", help=MEMORY_HELP),
         scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
         workers: Optional[int] = typer.Option(None, help=WORKERS_HELP, min=1),
         threads: Optional[int] = typer.Option(None, help=THREADS_HELP, min=1),
         processes: bool = typer.Option(False, help=PROCESSES_HELP),
         skip_bad_assets: bool = typer.Option(False, help="fill unreadable assets with nodata instead of stopping"),
         exclude_scl: str = typer.Option("0,1,3,8,9,10", help=SCL_HELP),
         mask: str = typer.Option("scl", help=MASK_HELP),
         dilate: int = typer.Option(0, help=DILATE_HELP, min=0, max=64),
         dashboard_address: str = typer.Option("127.0.0.1:0", help=DASHBOARD_HELP)) -> None:
    """Search a catalog and write the time cube (reflectance + clear mask) to Zarr."""
    from .bands import L2A_BANDS, validate_bands
    from .cluster import parse_memory, plan_memory
    from .catalog.search import SearchRequest
    from .catalog.sources import open_catalog, source_id
    from .cluster import dask_client
    from .cube.load import CubeSpec
    from .cube.store import build_cube
    from .progress import interrupt_guard, tile_progress

    try:
        req = SearchRequest(_aoi(bbox, aoi, stac), start, end, collection, max_cloud)
        cluster = _cluster(scheduler, workers, threads, processes, dashboard_address)
        plan, cluster = _plan(cluster, lambda threads: plan_memory(
            parse_memory(memory_limit), threads=threads, n_bands=len(validate_bands(bands) or L2A_BANDS), n_dates=1,
            chunk=chunk))
        spec = CubeSpec(bands=bands, crs=crs, resolution=resolution, chunk=plan.chunk, mask=_mask(exclude_scl, mask, dilate))
        with interrupt_guard(), open_catalog(stac) as url, dask_client(cluster, echo=console.print), \
                tile_progress("cube (date x tile)") as progress:
            res = build_cube(url, req, spec, out, progress=progress, skip_bad_assets=skip_bad_assets, source=source_id(stac),
                             regions_at_once=4 * plan.in_flight)
    except REPORTED as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted(out)
    console.print(f"cube {res.status}: {res.path} {json.dumps(res.shape)} from {res.n_items} items")


def _plan(cluster, plan_for):
    """The memory plan ``plan_for(threads per worker)`` and the cluster with its worker memory limit."""
    import os
    from dataclasses import replace

    threads = cluster.threads_per_worker or ((os.cpu_count() or 1) // max(1, len(cluster.gpus)) if cluster.gpus
                                             else os.cpu_count() or 1)
    plan = plan_for(threads)
    if cluster.scheduler is None:
        per_worker = plan.limit // (len(cluster.gpus) or cluster.n_workers or (2 if cluster.processes else 1))
        cluster = replace(cluster, memory_limit=str(per_worker))
    console.print(plan.describe())
    return plan, cluster


def _run(req, cluster) -> dict:
    """Run a :class:`~cloudfree.job.JobRequest` on ``cluster`` (started here, or joined): the device is
    decided where the model runs, the memory plan for the cluster's workers."""
    from .catalog.sources import open_catalog, source_id
    from .cluster import dask_client
    from .pipeline import run_job
    from .progress import StageProgress, interrupt_guard
    from .reconstruct.tiles import resolve_device

    if cluster.scheduler or cluster.gpus:
        # the workers decide: a CPU laptop driving a GPU cluster runs the model on the workers' GPUs
        device, where = req.device, "on each worker" if req.device == "auto" else "on the workers"
    else:
        device, where = resolve_device(req.device), "here"
    plan, cluster = _plan(cluster, lambda threads: req.plan(threads, gpu=device.startswith("cuda") or bool(cluster.gpus)))
    console.print(f"inference device: {device} ({where})" + (f"; one worker per GPU: {', '.join(cluster.gpus)}"
                                                            if cluster.gpus else ""))
    with interrupt_guard(), open_catalog(req.stac) as url, dask_client(cluster, echo=console.print), \
            StageProgress() as progress:
        return run_job(url, req.search_request(), req.cube_spec(plan.chunk), req.out, req.job_config(plan, device),
                       progress=progress, echo=console.print, source=source_id(req.stac))


def _run_and_report(req, cluster) -> dict:
    """:func:`_run`, its errors as one line, and where the outputs are."""
    try:
        res = _run(req, cluster)
    except REPORTED as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted(req.out)
    console.print(f"[green]done[/] ({res['method']}): {req.out / 'run.json'}")
    if res.get("items"):
        console.print(f"  STAC ItemCollection of the outputs: {res['items']}")
    for label, files in res["periods"].items():
        console.print(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in files.items()))
    return res


@app.command()
def run(stac: str = typer.Option(..., help=STAC_HELP), bbox: Optional[str] = typer.Option(None, help=BBOX_HELP),
        aoi: Optional[str] = typer.Option(None, help=AOI_HELP),
        start: str = typer.Option(..., help=START_HELP), end: str = typer.Option(..., help=END_HELP),
        out: Path = typer.Option(..., help="output folder (cube.zarr, mosaic.zarr, COGs, PNGs, STAC Items, run.json); "
                                           "re-running into it resumes"),
        model: Optional[str] = typer.Option(None, help="checkpoint (.safetensors); default: the shipped weights"),
        method: str = typer.Option("auto", help=METHOD_HELP),
        bands: Optional[str] = typer.Option(None, help=BANDS_HELP),
        period: Optional[str] = typer.Option(None, help="one image for the whole range (default), 'month', or a step "
                                                        "in days such as '16D'"),
        context_days: int = typer.Option(30, help="days before and after each period whose dates may feed it", min=0),
        max_dates: int = typer.Option(12, help="at most this many dates (nearest the period's centre) per image", min=1),
        collection: Optional[str] = typer.Option(None, help=COLLECTION_HELP),
        max_cloud: Optional[float] = typer.Option(None, help=CLOUD_HELP, min=0, max=100),
        crs: Optional[str] = typer.Option(None, help=CRS_HELP),
        resolution: Optional[float] = typer.Option(None, help=RESOLUTION_HELP, min=0.01),
        chunk: Optional[int] = typer.Option(None, help=CHUNK_HELP, min=16),
        memory_limit: str = typer.Option("auto", help=MEMORY_HELP),
        patch: int = typer.Option(256, help="spatial models only: patch side in pixels", min=32),
        overlap: int = typer.Option(16, help="spatial models only: blended overlap between patches in pixels", min=1),
        batch: Optional[int] = typer.Option(None, help="spatial models only: patches per forward pass (default: from "
                                                       "--memory-limit, at most 16)", min=1),
        device: str = typer.Option("auto", help=DEVICE_HELP),
        compile_model: bool = typer.Option(False, "--compile/--no-compile",
                                           help="run the per-pixel model on a GPU through torch.compile (3x the "
                                                "model's speed, but a slower run where reads set the pace; about 30 s "
                                                "per worker the first time, then cached in ~/.cache/cloudfree; eager "
                                                "if compilation fails)"),
        fill_unobserved: bool = typer.Option(False, help="keep the model's spatial guess where nothing clear was seen"),
        pass_through: bool = typer.Option(True, help="keep a target date's own clear observation unchanged (the "
                                                     "default model: unless next to a flagged cloud or off the series)"),
        exclude_scl: str = typer.Option("0,1,3,8,9,10", help=SCL_HELP),
        mask: str = typer.Option("scl", help=MASK_HELP),
        dilate: int = typer.Option(0, help=DILATE_HELP, min=0, max=64),
        skip_bad_assets: bool = typer.Option(False, help="treat unreadable assets as nodata (listed in run.json and the "
                                                         "cube) instead of stopping"),
        max_pixels: float = typer.Option(250e6, help="ask for --yes above this many output pixels (a Sentinel-2 tile at "
                                                     "10 m is 120 million)", min=1),
        yes: bool = typer.Option(False, "--yes", help="run even when the area is larger than --max-pixels"),
        stream: bool = typer.Option(True, "--stream/--keep-cube", help="--stream (default): compute the outputs "
                                    "straight from the assets block by block, without storing cube.zarr (resumes per "
                                    "output block; a complete cube.zarr of the same request is reused); --keep-cube: "
                                    "store the cube first (cube.zarr, for `cloudfree evaluate` or other runs)"),
        native_reads: bool = typer.Option(False, "--native-reads/--warp-reads", help=NATIVE_HELP),
        validate: bool = typer.Option(True, "--validate/--no-validate", help=VALIDATE_HELP),
        gpus: Optional[str] = typer.Option(None, help="local GPUs: all, a count, or ids like 0,1 — one Dask worker per "
                                                      "GPU (pinned with CUDA_VISIBLE_DEVICES, resource GPU=1)"),
        scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
        workers: Optional[int] = typer.Option(None, help=WORKERS_HELP, min=1),
        threads: Optional[int] = typer.Option(None, help=THREADS_HELP, min=1),
        processes: bool = typer.Option(False, help=PROCESSES_HELP),
        dashboard_address: str = typer.Option("127.0.0.1:0", help=DASHBOARD_HELP)) -> None:
    """The main job: search → cube → cloud-free mosaic (Zarr + COG + PNG + STAC Item)."""
    from .job import JobRequest

    try:
        req = JobRequest.from_options(
            stac, start, end, out, bbox=bbox, aoi=aoi, bands=bands, exclude_scl=exclude_scl, mask=mask, dilate=dilate,
            collection=collection, max_cloud_cover=max_cloud, crs=crs, resolution=resolution, chunk=chunk,
            native_reads=native_reads, method=method, model=model, period=period, context_days=context_days,
            max_dates=max_dates, device=device, patch=patch, overlap=overlap, batch=batch, pass_through=pass_through,
            compile=compile_model, fill_unobserved=fill_unobserved, skip_bad_assets=skip_bad_assets,
            max_pixels=None if yes else max_pixels, stream=stream, validate=validate, memory_limit=memory_limit)
        cluster = _cluster(scheduler, workers, threads, processes, dashboard_address, gpus)
    except REPORTED as exc:
        _fail(exc)
    _run_and_report(req, cluster)


@app.command()
def demo(out: Path = typer.Option(Path("cloudfree-demo/output"), help="output folder"),
         synthetic: bool = typer.Option(False, "--synthetic", help="use the generated SYNTHETIC catalog instead of the "
                                                                   "bundled real series (for scale runs)"),
         size: int = typer.Option(300, help="--synthetic only: side of the generated scene in 10 m pixels (multiple of 6)",
                                  min=6),
         device: str = typer.Option("auto", help=DEVICE_HELP),
         method: str = typer.Option("auto", help=METHOD_HELP),
         memory_limit: str = typer.Option("auto", help=MEMORY_HELP)) -> None:
    """Run the whole job on a REAL Sentinel-2 series bundled with cloudfree (or --synthetic) and write a
    side-by-side picture: a cloudy input date, the median composite, cloudfree."""
    from .job import JobRequest

    if synthetic:
        from .catalog.demo import DemoSpec, write_demo_catalog

        spec = DemoSpec(size=size)
        items = write_demo_catalog(out / "catalog", spec)
        fc = json.loads(items.read_text())
        west = min(f["bbox"][0] for f in fc["features"]); south = min(f["bbox"][1] for f in fc["features"])
        east = max(f["bbox"][2] for f in fc["features"]); north = max(f["bbox"][3] for f in fc["features"])
        pad = 0.002  # stay inside the synthetic footprint
        bbox = f"{west + pad},{south + pad},{east - pad},{north - pad}"
        dates = sorted(f["properties"]["datetime"][:10] for f in fc["features"])
        console.print(f"[yellow]SYNTHETIC[/] demo catalog ({len(dates)} dates, {spec.size}x{spec.size} px at 10 m) "
                      f"bbox={bbox} {dates[0]}..{dates[-1]}")
        stac, start, end, period, context = str(items), "2024-06-01", "2024-08-31", None, 45
    else:
        from .catalog import bundled_catalog

        stac = bundled_catalog()
        bbox, start, end, period, context = None, "2019-08-01", "2019-09-30", "month", 20
        console.print("[green]REAL[/] Sentinel-2 L2A series bundled with cloudfree: 72 dates of a 64x64 px patch in "
                      "northern France/Belgium (10 bands, SCL; Copernicus Sentinel data 2018-2019, see "
                      "cloudfree/catalog/data/ATTRIBUTION.md); monthly images for Aug-Sep 2019")
    try:
        req = JobRequest.from_options(stac, start, end, out, bbox=bbox, period=period, context_days=context,
                                      method=method, device=device, memory_limit=memory_limit, max_pixels=250e6,
                                      stream=False)
    except REPORTED as exc:
        _fail(exc)
    _run_and_report(req, _cluster(None, None, None, False))
    try:
        from .outputs.compare import write_comparison

        png = write_comparison(out, start, end, period=period, context_days=context, synthetic=synthetic)
        console.print(f"side by side (cloudy input | median composite | cloudfree): {png}")
    except Exception as exc:  # the picture is a convenience: say why it is missing, keep the run
        console.print(f"[yellow]no side-by-side picture: {exc}[/]")


@app.command("train")
def train_cmd(out: Path = typer.Option(..., help="run folder (checkpoints: last.safetensors; resumes from it)"),
              cube: list[Path] = typer.Option([], help="cube store(s) from 'cloudfree cube'"),
              sen12mscrts: Optional[Path] = typer.Option(None, help="SEN12MS-CR-TS root (published layout)"),
              arch: str = typer.Option("timegate_unet", help="timegate_unet | timegate_terramind (the per-pixel default "
                                                             "model trains with pipelines/train_pixel_model.py)"),
              terramind_variant: str = typer.Option("terramind_v1_tiny", help="TerraMind backbone in terratorch's registry"),
              terramind_weights: Optional[Path] = typer.Option(None, help="local TerraMind checkpoint (no downloads)"),
              freeze_encoder: bool = typer.Option(False, help="TerraMind: train the head only"),
              width: int = typer.Option(32, help="U-Net base width (channels)", min=4),
              steps: int = typer.Option(2000, help="optimiser steps", min=1),
              batch: int = typer.Option(8, help="examples per step", min=1),
              crop: int = typer.Option(128, help="training crop side in pixels", min=16),
              max_dates: int = typer.Option(12, help="input dates per example", min=2),
              lr: float = typer.Option(1e-3, help="learning rate (AdamW, cosine decay)", min=0),
              loss: str = typer.Option("l1", help="l1 | l2 on the hidden pixels"),
              ssim_weight: float = typer.Option(0.2, help="weight of the (1 - SSIM) term", min=0),
              ckpt_every: int = typer.Option(200, help="validate and checkpoint every this many steps", min=1),
              seed: int = typer.Option(0, help="random seed"),
              workers: int = typer.Option(0, help="data-loader worker processes", min=0),
              device: str = typer.Option("auto", help=DEVICE_HELP),
              mask_bank: Optional[Path] = typer.Option(None, help="CLM.npy of real cloud masks to hide pixels with")) -> None:
    """Train a model from cubes or SEN12MS-CR-TS (no cloud-free targets needed)."""
    from .evaluate.examples import load_mask_bank
    from .training.fit import fit_cubes, fit_sen12mscrts
    from .models import default_config
    from .training.trainer import TrainConfig

    try:
        model = default_config(arch, unet={"width": width, "depth": 4, "gamma_init": 0.01, "max_width": 256},
                               terramind={"variant": terramind_variant, "weights": str(terramind_weights) if terramind_weights else None,
                                          "freeze_encoder": freeze_encoder, "decoder_width": 64, "gamma_init": 0.01})
        cfg = TrainConfig(steps=steps, batch=batch, crop=crop, max_dates=max_dates, lr=lr, loss=loss, ssim_weight=ssim_weight,
                          ckpt_every=ckpt_every, val_every=ckpt_every, seed=seed, num_workers=workers, model=model)
        if bool(cube) == bool(sen12mscrts):
            raise ValueError("give --cube (one or more) or --sen12mscrts")
        bank = load_mask_bank(mask_bank) if mask_bank else None
        dev = None if device == "auto" else device
        if cube:
            res = fit_cubes(cube, out, cfg, device=dev, mask_bank=bank, log=console.print)
        else:
            res = fit_sen12mscrts(sen12mscrts, out, cfg, device=dev, log=console.print)
    except REPORTED as exc:
        _fail(exc)
    console.print(f"trained {res['step']} steps on {res['device']}: {out / 'last.safetensors'}")


@app.command()
def evaluate(out: Path = typer.Option(..., help="report folder (report.json, report.md, PNGs)"),
             cube: Optional[Path] = typer.Option(None, help="cube store"),
             sen12mscrts: Optional[Path] = typer.Option(None, help="SEN12MS-CR-TS root; uses its test split"),
             model: Optional[str] = typer.Option(None, help="checkpoint; default: the shipped weights; 'none' = baselines only"),
             min_clear: float = typer.Option(0.4, help="target dates: at least this fraction (0-1) of the window clear",
                                             min=0, max=1),
             max_dates: int = typer.Option(12, help="input dates per target (nearest first)", min=2),
             max_patches: int = typer.Option(32, help="SEN12MS-CR-TS: test patches to score", min=1),
             device: str = typer.Option("auto", help=DEVICE_HELP),
             bands: Optional[str] = typer.Option(None, help="evaluate these bands of the cube (default: all of its bands)"),
             window: int = typer.Option(1024, help="evaluate the cube in windows of this many pixels", min=16)) -> None:
    """Model vs compositing baselines on held-out dates (hidden under real cloud masks)."""
    from .bands import validate_bands
    from .evaluate.cube_eval import evaluate_store
    from .progress import tile_progress
    from .reconstruct.tiles import resolve_device

    try:
        with tile_progress("evaluate (window x target date)") as progress:
            files = evaluate_store(out, cube=cube, sen12mscrts=sen12mscrts, model=model, bands=validate_bands(bands),
                                   device=resolve_device(device), min_clear=min_clear, max_dates=max_dates,
                                   max_patches=max_patches, window=window, progress=progress,
                                   echo=lambda m: console.print(f"[yellow]{m}[/]"))
    except REPORTED as exc:
        _fail(exc)
    console.print((out / "report.md").read_text())
    console.print(f"report: {files['markdown']}, {len(files['pngs'])} quicklooks")


def main() -> None:
    """The ``cloudfree`` command: an unexpected failure is one line (the traceback with ``--verbose``)."""
    import sys

    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise SystemExit(130) from None
    except Exception as exc:
        if "--verbose" in sys.argv or "-v" in sys.argv:
            raise
        console.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}")
        console.print("run again with --verbose for the full traceback; please report it if the message does not "
                      "say what to do")
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
