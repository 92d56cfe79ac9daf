"""The command line's options, each spelled once: help texts and the ``Annotated`` option types the
commands of :mod:`cloudfree.cli` share (a ``--stac`` reads the same in ``search``, ``cube`` and ``run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

STAC_HELP = ("STAC API URL, 'earth-search', 'planetary-computer', 'demo' (SYNTHETIC), a static catalog or collection "
             "(catalog.json / collection.json, path or file:// or https URL) or an item file (.json/.ndjson/.parquet)")
BANDS_HELP = ("comma-separated band ids or common names, e.g. B02,B03,B04,B08 or red,nir "
              "(default: every L2A band the catalog has, in canonical order)")
COLLECTION_HELP = "collection id (default: sentinel-2-l2a where the catalog has it, else its only collection)"
NATIVE_HELP = ("a stored cube (--keep-cube) reads 20 m / 60 m bands and SCL on their own grid and enlarges them "
               "with the streamed runs' kernel (one request, one picture); --warp-reads: GDAL's warp (within 1 DN)")
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
OUT_HELP = ("output folder (cube.zarr, mosaic.zarr, COGs, PNGs, STAC Items, run.json); re-running into it resumes")
PERIOD_HELP = "one image for the whole range (default), 'month', or a step in days such as '16D'"
COMPILE_HELP = ("run the per-pixel model on a GPU through torch.compile (faster model, but a slower run where reads set "
                "the pace; compiled once per worker, then cached in ~/.cache/cloudfree; eager if compilation fails)")
PASS_HELP = ("keep a target date's own clear observation unchanged (the default model: unless next to a flagged cloud "
             "or off the series)")
STREAM_HELP = ("--stream (default): compute the outputs straight from the assets block by block, without storing "
               "cube.zarr (resumes per output block; a complete cube.zarr of the same request is reused); --keep-cube: "
               "store the cube first (cube.zarr, for `cloudfree evaluate` or other runs)")
GPUS_HELP = "local GPUs: all, a count, or ids like 0,1 — one Dask worker per GPU (pinned with CUDA_VISIBLE_DEVICES, resource GPU=1)"
MAX_PIXELS_HELP = "ask for --yes above this many output pixels (a Sentinel-2 tile at 10 m is 120 million)"

Stac = Annotated[str, typer.Option(help=STAC_HELP)]
Bbox = Annotated[Optional[str], typer.Option(help=BBOX_HELP)]
Aoi = Annotated[Optional[str], typer.Option(help=AOI_HELP)]
Start = Annotated[str, typer.Option(help=START_HELP)]
End = Annotated[str, typer.Option(help=END_HELP)]
Collection = Annotated[Optional[str], typer.Option(help=COLLECTION_HELP)]
MaxCloud = Annotated[Optional[float], typer.Option(help=CLOUD_HELP, min=0, max=100)]
Bands = Annotated[Optional[str], typer.Option(help=BANDS_HELP)]
Crs = Annotated[Optional[str], typer.Option(help=CRS_HELP)]
Resolution = Annotated[Optional[float], typer.Option(help=RESOLUTION_HELP, min=0.01)]
Chunk = Annotated[Optional[int], typer.Option(help=CHUNK_HELP, min=16)]
MemoryLimit = Annotated[str, typer.Option(help=MEMORY_HELP)]
Scheduler = Annotated[Optional[str], typer.Option(help=SCHEDULER_HELP)]
Workers = Annotated[Optional[int], typer.Option(help=WORKERS_HELP, min=1)]
Threads = Annotated[Optional[int], typer.Option(help=THREADS_HELP, min=1)]
Processes = Annotated[bool, typer.Option(help=PROCESSES_HELP)]
Dashboard = Annotated[str, typer.Option(help=DASHBOARD_HELP)]
Gpus = Annotated[Optional[str], typer.Option(help=GPUS_HELP)]
ExcludeScl = Annotated[str, typer.Option(help=SCL_HELP)]
Mask = Annotated[str, typer.Option(help=MASK_HELP)]
Dilate = Annotated[int, typer.Option(help=DILATE_HELP, min=0, max=64)]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]
Method = Annotated[str, typer.Option(help=METHOD_HELP)]
Model = Annotated[Optional[str], typer.Option(help="checkpoint (.safetensors); default: the shipped weights")]
SkipBad = Annotated[bool, typer.Option(help="treat unreadable assets as nodata (listed in run.json and the cube) "
                                            "instead of stopping")]
Native = Annotated[bool, typer.Option("--native-reads/--warp-reads", help=NATIVE_HELP)]
Validate = Annotated[bool, typer.Option("--validate/--no-validate", help=VALIDATE_HELP)]
Period = Annotated[Optional[str], typer.Option(help=PERIOD_HELP)]
ContextDays = Annotated[int, typer.Option(help="days before and after each period whose dates may feed it", min=0)]
MaxDates = Annotated[int, typer.Option(help="at most this many dates (nearest the period's centre) per image", min=1)]
Patch = Annotated[int, typer.Option(help="spatial models only: patch side in pixels", min=32)]
Overlap = Annotated[int, typer.Option(help="spatial models only: blended overlap between patches in pixels", min=1)]
Batch = Annotated[Optional[int], typer.Option(help="spatial models only: patches per forward pass (default: from "
                                                   "--memory-limit, at most 16)", min=1)]
Compile = Annotated[bool, typer.Option("--compile/--no-compile", help=COMPILE_HELP)]
Fill = Annotated[bool, typer.Option("--fill-unobserved/--no-fill-unobserved", help=(
    "pixels with no clear observation in their period's window take the value interpolated between the nearest "
    "periods that saw them clear (a widened window; flagged in the 'filled' layer); --no-fill-unobserved leaves "
    "them nodata"))]
PassThrough = Annotated[bool, typer.Option(help=PASS_HELP)]
MaxPixels = Annotated[float, typer.Option(help=MAX_PIXELS_HELP, min=1)]
Yes = Annotated[bool, typer.Option("--yes", help="run even when the area is larger than --max-pixels")]
Stream = Annotated[bool, typer.Option("--stream/--keep-cube", help=STREAM_HELP)]
Out = Annotated[Path, typer.Option(help=OUT_HELP)]

# cloudfree train
Arch = Annotated[str, typer.Option(help="any registered architecture: pixel_timegate (the default model), "
                                        "pixel_terramind, timegate_unet, timegate_terramind")]
TrainCatalog = Annotated[Optional[str], typer.Option(
    "--catalog", help="per-pixel models: a static STAC catalog whose collections are whole real series")]
TrainCollections = Annotated[list[str], typer.Option("--collection", help="per-pixel models: collections to train on "
                                                                          "(default: all)")]
TrainCubes = Annotated[list[Path], typer.Option("--cube", help="image models: cube store(s) from 'cloudfree cube'")]
Sen12 = Annotated[Optional[Path], typer.Option(help="image models: SEN12MS-CR-TS root (published layout)")]
Init = Annotated[Optional[Path], typer.Option(help="pixel_terramind: the per-pixel checkpoint it builds on (default: "
                                                   "the shipped weights)")]
Steps = Annotated[int, typer.Option(help="optimiser steps", min=1)]
Minutes = Annotated[Optional[float], typer.Option(help="wall-time budget (the schedule anneals by time)", min=0)]
Lr = Annotated[Optional[float], typer.Option(help="learning rate (AdamW, cosine decay; default: the architecture's own)",
                                             min=0)]
TrainBatch = Annotated[int, typer.Option("--batch", help="image models: examples per step", min=1)]
Crop = Annotated[int, typer.Option(help="image models: training crop side in pixels", min=16)]
TrainMaxDates = Annotated[int, typer.Option("--max-dates", help="image models: input dates per example", min=2)]
Loss = Annotated[str, typer.Option(help="image models: l1 | charbonnier on the hidden pixels")]
SsimWeight = Annotated[float, typer.Option(help="image models: weight of the (1 - SSIM) term", min=0)]
CkptEvery = Annotated[int, typer.Option(help="image models: validate and checkpoint every this many steps", min=1)]
LoaderWorkers = Annotated[int, typer.Option("--workers", help="image models: data-loader worker processes", min=0)]
Width = Annotated[int, typer.Option(help="timegate_unet: U-Net base width (channels)", min=4)]
TmVariant = Annotated[str, typer.Option(help="TerraMind backbone in terratorch's registry")]
TmWeights = Annotated[Optional[Path], typer.Option(help="local TerraMind checkpoint (no downloads)")]
Freeze = Annotated[bool, typer.Option(help="timegate_terramind: train the head only")]
MaskBank = Annotated[Optional[Path], typer.Option(help="image models: CLM.npy of real cloud masks to hide pixels with")]
Seed = Annotated[int, typer.Option(help="random seed")]


def verbose_first(args: list[str]) -> list[str]:
    """``--verbose``/``-v`` is accepted anywhere on the line (``cloudfree run ... --verbose``), not only
    before the command: moved to the front, where the app's callback reads it."""
    flags = [a for a in args if a in ("--verbose", "-v")]
    return flags[:1] + [a for a in args if a not in ("--verbose", "-v")] if flags else args
