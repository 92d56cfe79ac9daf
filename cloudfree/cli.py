"""``cloudfree`` command line: each command parses its options, builds the request, calls one
library function and prints. The options themselves are spelled once, in :mod:`cloudfree.options`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from . import options as o
from .errors import CloudfreeError
from .extras import missing_torch
from .progress import said, say

app = typer.Typer(help="Cloud-free Sentinel-2 imagery from image time series, on xarray and Dask.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False,
                  rich_markup_mode=None)  # help texts are plain text: "cloudfree[masks]" stays as written

REPORTED = (CloudfreeError, ValueError, LookupError, RuntimeError, OSError, ImportError)
"""What a command reports as one line (``--verbose`` for the traceback): cloudfree's own errors,
and the built-in ones its library raises where no cloudfree kind is named yet."""


def _fail(exc: Exception) -> None:
    said(("error: ", "bold red"), missing_torch(exc) or str(exc))
    raise typer.Exit(code=2)


def _interrupted(out: Path | None) -> None:
    """Ctrl-C: one line saying what is kept and how to go on, no traceback."""
    where = f"everything finished so far is kept in {out}; " if out else ""
    said(("interrupted: ", "yellow"), f"{where}run the same command again to resume where it stopped")
    raise typer.Exit(code=130)


def _calling(fn, *args, out: Path | None = None, **kwargs):
    """``fn(*args, **kwargs)``, its errors as one line and Ctrl-C as a note on resuming."""
    try:
        return fn(*args, **kwargs)
    except REPORTED as exc:
        _fail(exc)
    except KeyboardInterrupt:
        _interrupted(out)


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

    path = _calling(lambda: write_demo_catalog(out, DemoSpec(size=size, n_dates=dates, seed=seed)))
    say(f"wrote SYNTHETIC demo catalog: {path}")


@app.command()
def search(stac: o.Stac, start: o.Start, end: o.End, bbox: o.Bbox = None, aoi: o.Aoi = None,
           collection: o.Collection = None, max_cloud: o.MaxCloud = None) -> None:
    """List the items a search finds."""
    from .catalog.sources import search_items
    from .job import JobRequest
    from .progress import printable

    req = _calling(JobRequest.from_options, stac, start, end, ".", bbox=bbox, aoi=aoi)
    items = _calling(search_items, stac, start, end, aoi=req.aoi, collection=collection, max_cloud_cover=max_cloud)
    for it in items:
        typer.echo(f"{printable(it.id)}\t{it.datetime:%Y-%m-%d}\tcloud={it.properties.get('eo:cloud_cover', float('nan')):.1f}%")


@app.command()
def cube(stac: o.Stac, start: o.Start, end: o.End,
         out: Path = typer.Option(..., help="cube store to write (a .zarr folder; resumes an interrupted one)"),
         bbox: o.Bbox = None, aoi: o.Aoi = None, collection: o.Collection = None, max_cloud: o.MaxCloud = None,
         bands: o.Bands = None, crs: o.Crs = None, resolution: o.Resolution = None, chunk: o.Chunk = None,
         memory_limit: o.MemoryLimit = "auto", scheduler: o.Scheduler = None, workers: o.Workers = None,
         threads: o.Threads = None, processes: o.Processes = False, skip_bad_assets: o.SkipBad = False,
         exclude_scl: o.ExcludeScl = "0,1,3,8,9,10", mask: o.Mask = "scl", dilate: o.Dilate = 0,
         dashboard_address: o.Dashboard = "127.0.0.1:0") -> None:
    """Search a catalog and write the time cube (reflectance + clear mask) to Zarr."""
    from .cluster import cluster_config
    from .job import JobRequest
    from .pipeline import write_cube
    from .progress import tile_progress

    req = _calling(JobRequest.from_options, stac, start, end, out, bbox=bbox, aoi=aoi, bands=bands,
                   exclude_scl=exclude_scl, mask=mask, dilate=dilate, collection=collection, max_cloud_cover=max_cloud,
                   crs=crs, resolution=resolution, chunk=chunk, skip_bad_assets=skip_bad_assets, memory_limit=memory_limit)
    cluster = _calling(cluster_config, scheduler, workers, threads, processes, dashboard_address)
    res = _calling(write_cube, req, cluster, progress=tile_progress("cube (date x tile)"), echo=say, out=out)
    say(f"cube {res.status}: {res.path} {list(res.shape)} from {res.n_items} items")


def _run_and_report(req, cluster) -> dict:
    """Run the request, its errors as one line, and say where the outputs are."""
    from .pipeline import run_request
    from .progress import StageProgress

    res = _calling(run_request, req, cluster, progress=StageProgress(), echo=say, out=req.out)
    said(("done", "green"), f" ({res['method']}): {req.out / 'run.json'}")
    if res.get("items"):
        say(f"  STAC ItemCollection of the outputs: {res['items']}")
    for label, files in res["periods"].items():
        say(f"  {label}: " + ", ".join(f"{k}={v}" for k, v in files.items()))
    return res


@app.command()
def run(stac: o.Stac, start: o.Start, end: o.End, out: o.Out, bbox: o.Bbox = None, aoi: o.Aoi = None,
        model: o.Model = None, method: o.Method = "auto", bands: o.Bands = None, period: o.Period = None,
        context_days: o.ContextDays = 30, max_dates: o.MaxDates = 12, collection: o.Collection = None,
        max_cloud: o.MaxCloud = None, crs: o.Crs = None, resolution: o.Resolution = None, chunk: o.Chunk = None,
        memory_limit: o.MemoryLimit = "auto", patch: o.Patch = 256, overlap: o.Overlap = 16, batch: o.Batch = None,
        device: o.Device = "auto", compile_model: o.Compile = False, fill_unobserved: o.Fill = True,
        pass_through: o.PassThrough = True, exclude_scl: o.ExcludeScl = "0,1,3,8,9,10", mask: o.Mask = "scl",
        dilate: o.Dilate = 0, skip_bad_assets: o.SkipBad = False, max_pixels: o.MaxPixels = 250e6, yes: o.Yes = False,
        stream: o.Stream = True, native_reads: o.Native = True, validate: o.Validate = True, gpus: o.Gpus = None,
        scheduler: o.Scheduler = None, workers: o.Workers = None, threads: o.Threads = None,
        processes: o.Processes = False, dashboard_address: o.Dashboard = "127.0.0.1:0") -> None:
    """The main job: search → cube → cloud-free mosaic (Zarr + COG + PNG + STAC Item)."""
    from .cluster import cluster_config
    from .job import JobRequest

    req = _calling(JobRequest.from_options,
                   stac, start, end, out, bbox=bbox, aoi=aoi, bands=bands, exclude_scl=exclude_scl, mask=mask,
                   dilate=dilate, collection=collection, max_cloud_cover=max_cloud, crs=crs, resolution=resolution,
                   chunk=chunk, native_reads=native_reads, method=method, model=model, period=period,
                   context_days=context_days, max_dates=max_dates, device=device, patch=patch, overlap=overlap,
                   batch=batch, pass_through=pass_through, compile=compile_model, fill_unobserved=fill_unobserved,
                   skip_bad_assets=skip_bad_assets, max_pixels=None if yes else max_pixels, stream=stream,
                   validate=validate, memory_limit=memory_limit)
    _run_and_report(req, _calling(cluster_config, scheduler, workers, threads, processes, dashboard_address, gpus))


@app.command()
def demo(out: Path = typer.Option(Path("cloudfree-demo/output"), help="output folder"),
         synthetic: bool = typer.Option(False, "--synthetic", help="use the generated SYNTHETIC catalog instead of the "
                                                                   "bundled real series (for scale runs)"),
         size: int = typer.Option(300, help="--synthetic only: side of the generated scene in 10 m pixels (multiple of 6)",
                                  min=6),
         device: o.Device = "auto", method: o.Method = "auto", memory_limit: o.MemoryLimit = "auto") -> None:
    """Run the whole job on a REAL Sentinel-2 series bundled with cloudfree (or --synthetic) and write a
    side-by-side picture: a cloudy input date, the median composite, cloudfree."""
    from .catalog.demo import demo_job
    from .cluster import ClusterConfig
    from .job import JobRequest

    job = _calling(demo_job, out, synthetic, size)
    say(job.banner)
    req = _calling(JobRequest.from_options, job.stac, job.start, job.end, out, bbox=job.bbox, period=job.period,
                   context_days=job.context_days, method=method, device=device, memory_limit=memory_limit,
                   max_pixels=250e6, stream=False)
    _run_and_report(req, ClusterConfig())
    from .outputs.compare import describe_comparison

    say(describe_comparison(out, job))


@app.command("train")
def train_cmd(out: Path = typer.Option(..., help="run folder (last.safetensors, best.safetensors; resumes from them)"),
              arch: o.Arch = "pixel_timegate", catalog: o.TrainCatalog = None, collection: o.TrainCollections = [],
              cube: o.TrainCubes = [], sen12mscrts: o.Sen12 = None, init: o.Init = None, steps: o.Steps = 2000,
              minutes: o.Minutes = None, lr: o.Lr = None, batch: o.TrainBatch = 8, crop: o.Crop = 128,
              max_dates: o.TrainMaxDates = 12, loss: o.Loss = "l1", ssim_weight: o.SsimWeight = 0.2,
              ckpt_every: o.CkptEvery = 200, workers: o.LoaderWorkers = 0, width: o.Width = 32,
              terramind_variant: o.TmVariant = "terramind_v1_tiny", terramind_weights: o.TmWeights = None,
              freeze_encoder: o.Freeze = False, mask_bank: o.MaskBank = None, seed: o.Seed = 0,
              device: o.Device = "auto") -> None:
    """Train any registered model on real series, cubes or SEN12MS-CR-TS (no cloud-free targets needed)."""
    from .models import default_config
    from .training.fit import TrainData, train_model
    from .training.trainer import TrainConfig

    def fit():
        tm = {"variant": terramind_variant, "weights": str(terramind_weights) if terramind_weights else None,
              "freeze_encoder": freeze_encoder, "decoder_width": 64, "gamma_init": 0.01}
        model = default_config(arch, unet={"width": width, "depth": 4, "gamma_init": 0.01, "max_width": 256}, terramind=tm)
        cfg = TrainConfig(steps=steps, batch=batch, crop=crop, max_dates=max_dates, loss=loss, ssim_weight=ssim_weight,
                          ckpt_every=ckpt_every, val_every=ckpt_every, seed=seed, num_workers=workers, model=model)
        data = TrainData(tuple(cube), sen12mscrts, catalog, tuple(collection), mask_bank)
        return train_model(arch, data, out, cfg, lr=lr, minutes=minutes, init=init, device=device, log=say)

    res = _calling(fit, out=out)
    say(f"trained {res['step']} steps of {arch} on {res['device']}: {out / 'last.safetensors'}")


@app.command()
def evaluate(out: Path = typer.Option(..., help="report folder (report.json, report.md, PNGs)"),
             cube: Optional[Path] = typer.Option(None, help="cube store"),
             sen12mscrts: Optional[Path] = typer.Option(None, help="SEN12MS-CR-TS root; uses its test split"),
             model: Optional[str] = typer.Option(None, help="checkpoint; default: the shipped weights; 'none' = baselines only"),
             min_clear: float = typer.Option(0.4, help="target dates: at least this fraction (0-1) of the window clear",
                                             min=0, max=1),
             max_dates: int = typer.Option(12, help="input dates per target (nearest first)", min=2),
             max_patches: int = typer.Option(32, help="SEN12MS-CR-TS: test patches to score", min=1),
             device: o.Device = "auto",
             bands: Optional[str] = typer.Option(None, help="evaluate these bands of the cube (default: all of its bands)"),
             window: int = typer.Option(1024, help="evaluate the cube in windows of this many pixels", min=16)) -> None:
    """Model vs compositing baselines on held-out dates (hidden under real cloud masks)."""
    from .evaluate.cube_eval import evaluate_store
    from .progress import tile_progress

    def report():
        with tile_progress("evaluate (window x target date)") as progress:
            return evaluate_store(out, cube=cube, sen12mscrts=sen12mscrts, model=model, bands=bands, device=device,
                                  min_clear=min_clear, max_dates=max_dates, max_patches=max_patches, window=window,
                                  progress=progress, echo=lambda m: say(m, "yellow"))

    files = _calling(report)
    say((out / "report.md").read_text())
    say(f"report: {files['markdown']}, {len(files['pngs'])} quicklooks")


def main() -> None:
    """The ``cloudfree`` command: an unexpected failure is one line (the traceback with ``--verbose``)."""
    import sys

    sys.argv[1:] = o.verbose_first(sys.argv[1:])
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        say("interrupted", "yellow")
        raise SystemExit(130) from None
    except Exception as exc:
        if "--verbose" in sys.argv or "-v" in sys.argv:
            raise
        if missing_torch(exc):
            said(("error: ", "bold red"), missing_torch(exc))
            raise SystemExit(2) from None
        said(("error: ", "bold red"), f"{type(exc).__name__}: {exc}")
        say("run again with --verbose for the full traceback; please report it if the message does not "
                      "say what to do")
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
