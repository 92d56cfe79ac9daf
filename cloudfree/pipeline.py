"""The whole job as one library call: search → cube (Zarr, reused/resumed) → reconstruct → outputs.

Every stage is resumable: the cube and the output Zarr are written region by region and only
marked complete at the end; COGs/PNGs/Items are rebuilt from the finished Zarr when stale or
missing; the run manifest ``run.json`` is written last.
"""

from __future__ import annotations

from .errors import DataError, InputError, OutputLockedError

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import dask
import pandas as pd

from .catalog.search import SearchRequest, search
from .catalog.sources import open_catalog, source_id
from .tuning import MAX_READ_AHEAD
from .cube.load import CubeSpec, open_cube
from .cube.store import build_cube
from .job import JobConfig, JobRequest
from .models.checkpoint import default_weights
from .outputs.folder import write_atomic
from .outputs.write import write_outputs
from .provenance import CubeProvenance, ImageProvenance, RunManifest
from .reconstruct.dataset import reconstruct, resolve_method

__all__ = ["JobConfig", "run_job", "run", "run_request", "write_cube", "default_weights"]


def _model_digest(model) -> str | None:
    if model is None:
        return None
    h = hashlib.sha256()
    if isinstance(model, (str, Path)):
        with open(model, "rb") as f:
            for blk in iter(lambda: f.read(1 << 20), b""):
                h.update(blk)
    else:
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(out: Path):
    """One run per output folder (an advisory lock the OS drops when the process dies, even by SIGKILL)."""
    import fcntl
    import os

    from .outputs.folder import refuse_links

    out.mkdir(parents=True, exist_ok=True)
    refuse_links(out)  # before anything is written: a link inside --out would be written through
    fd = os.open(out / ".cloudfree.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    f = os.fdopen(fd, "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise OutputLockedError(f"another cloudfree run (pid {pid}) is writing into {out}; wait for it or choose "
                                "another --out") from None
    lock = out / ".cloudfree.lock"
    try:
        same = os.fstat(f.fileno()).st_ino == os.stat(lock).st_ino
    except FileNotFoundError:
        same = False
    if not same:  # the run before us finished and removed the lock file between our open and lock
        f.close()
        raise OutputLockedError(f"another cloudfree run just finished in {out}; run the command again")
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    try:
        yield
    finally:  # no lock file is left behind, whatever the end (removed while still held)
        lock.unlink(missing_ok=True)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def run_job(stac_url: str, request: SearchRequest, spec: CubeSpec, out_dir: str | Path, job: JobConfig = JobConfig(),
            *, progress=None, echo=print, stop_after: int | None = None, source: str | None = None) -> dict:
    """Run the whole job into ``out_dir`` from an open STAC API URL; returns the manifest (also
    written as ``run.json``). Bands, method and model are checked after the search and before any
    pixel is read."""
    return execute_run(prepare_run(stac_url, request, spec, out_dir, job, progress=progress, echo=echo,
                                   stop_after=stop_after, source=source))


def prepare_run(stac_url: str, request: SearchRequest, spec: CubeSpec, out_dir: str | Path, job: JobConfig = JobConfig(),
                *, progress=None, echo=print, stop_after: int | None = None, source: str | None = None) -> "RunContext":
    """Everything a run decides before it needs a cluster: the search, the input checks, the
    size, the method and the model (loaded once: a corrupt file fails now). Nothing is computed on
    Dask, so what the catalog, the inputs or the options get wrong is said before a cluster starts."""
    out = Path(out_dir)
    # The cube spans the periods widened by the context, so edge periods see dates on both sides.
    search_req = replace(request, start=str((pd.Timestamp(request.start) - pd.Timedelta(days=job.context_days)).date()),
                         end=str((pd.Timestamp(request.end) + pd.Timedelta(days=job.context_days)).date()))
    items = _search_or_hint(stac_url, request, search_req, source)
    from .cube.checks import check_inputs

    inputs = check_inputs(items, spec.bands, skip_bad_assets=job.skip_bad_assets)  # before any pixel read
    for line in inputs.describe():
        echo(line)
    items = inputs.items
    spec = spec.resolved(items)
    from .cube.load import band_mapping

    band_mapping(items, spec.bands)  # a band the catalog lacks fails here, naming what it has
    _size_check(items, request, spec, job, echo)
    method, model, reason = resolve_method(job.method, list(spec.bands), job.model, warn=False)
    echo(f"method: {method} ({reason})")
    if method == "model":
        from .models import load_checkpoint

        load_checkpoint(model)  # full load once here: a corrupt file fails now, not inside Dask
    return RunContext(stac_url, request, search_req, items, spec, out, job, method, model, reason, source or stac_url,
                      inputs, progress, echo, stop_after)


def execute_run(ctx: "RunContext") -> dict:
    """The run's stages on the active cluster (or Dask's threads), under the output folder's lock."""
    from .cluster import model_task_config

    if ctx.method == "model":
        _check_visible_on_workers(ctx.model)
    with _locked(ctx.out), dask.config.set(model_task_config()):
        return _run_stages(ctx)


def _search_or_hint(stac_url: str, request: SearchRequest, search_req: SearchRequest, source: str | None) -> list:
    """The items of the widened search; when none is found, the error says the user's dates (not
    the widened window) and whether the bbox with longitude and latitude swapped would find items."""
    from .aoi import parse_bbox
    from .errors import AOIError, NoItemsFound

    try:
        return search(stac_url, search_req, source=source)
    except NoItemsFound as exc:
        msg = str(exc).replace(f"dates {search_req.start}..{search_req.end}",
                               f"dates {request.start}..{request.end} (searched {search_req.start}..{search_req.end} "
                               "with the context days)")
        w, s, e, n = request.aoi.bbox if request.aoi is not None else (None,) * 4
        if w is not None and request.aoi.geometry.equals(request.aoi.geometry.envelope):
            try:
                swapped = replace(search_req, aoi=parse_bbox((s, w, n, e)))
                found = len(search(stac_url, swapped, source=source))
            except (AOIError, NoItemsFound, InputError):
                found = 0
            if found:
                msg += (f". The same bbox with longitude and latitude swapped ({s:g},{w:g},{n:g},{e:g}) finds {found} "
                        "items: --bbox is west,south,east,north (longitude first)")
        raise NoItemsFound(msg) from None


@dataclass(frozen=True)
class RunContext:
    """One run after the search: what it was asked and what the checks before any read resolved."""

    stac_url: str
    request: SearchRequest
    """The user's dates and area."""
    search_req: SearchRequest
    """The dates searched: the request widened by the context days."""
    items: list
    spec: CubeSpec
    out: Path
    job: JobConfig
    method: str
    """The resolved prior: ``model`` where the checkpoint serves the bands, else a compositing method."""
    model: object
    reason: str
    catalog: str
    """The catalog as the user named it (part of the cube's fingerprint)."""
    inputs: object = None
    """The :class:`~cloudfree.cube.checks.InputChecks` of the items (what was left out, reprojected)."""
    progress: object = None
    echo: object = print
    stop_after: int | None = None


@dataclass
class CubeSource:
    """Where a run's pixels come from: one strategy of three.

    ``stored``: ``cube.zarr`` written first (or reused); ``lazy``: the cube computed from the
    assets block by block, never stored; ``blocks``: a per-pixel model reads every block itself on
    the bands' own grids (the cube is then a template: coordinates and attributes only)."""

    kind: str
    cube: object
    no_data: list[str]
    """Dates with no pixel of data over the area."""
    clear_seen: int | None = None
    """Clear observations the mask shows over the area on all dates (sampled on a coarse grid for
    a streamed run, ``clear_exact`` False); None where unknown (a learned mask)."""
    clear_exact: bool = True
    skipped: list[str] = field(default_factory=list)
    """Asset reads that failed and were treated as nodata (``skip_bad_assets``)."""
    reads: object = None
    """For block reads: the per-pixel model's :class:`~cloudfree.cube.block_reads.BlockReads`."""
    failed_reads: object = None
    """A context manager collecting failed asset reads of a streamed run."""


def _run_stages(ctx: RunContext) -> dict:
    """The run as named stages: cube source → reconstruct (validating each period first) → write →
    check → manifest."""
    src = _cube_source(ctx)
    with _reading_assets(ctx, src, "validating the run for"):  # validation reads windows of the assets
        ds = _reconstruct(ctx, src)
    res = _write(ctx, src, ds)
    if res["status"] == "interrupted":
        return {"status": "interrupted"}
    checks = _check(ctx, res, ds)
    manifest = _manifest(ctx, src, ds, res, checks)
    write_atomic(ctx.out / "run.json", json.dumps(manifest, indent=1))
    return manifest


def _reading_assets(ctx: RunContext, src: CubeSource, doing: str):
    """A failed asset read while ``doing`` is named (and points to ``--skip-bad-assets``), as in
    the write stage; a stored cube reads no assets."""
    if src.kind == "stored":
        return contextlib.nullcontext()
    from .cube.store import asset_reads

    return asset_reads(ctx.out / "mosaic.zarr", doing)


def _cube_source(ctx: RunContext) -> CubeSource:
    """The cube source stage: a complete ``cube.zarr`` of the same request is reused; a streamed
    run reads from the assets (block reads where a per-pixel model and SCL allow), else the cube
    is stored first. Dates without data are named (all of them is an error)."""
    from .cube.store import asset_reads, cube_fingerprint, lazy_cube
    from .models.traits import is_pixelwise
    from .zarrstore import store_state

    job, spec, out, echo = ctx.job, ctx.spec, ctx.out, ctx.echo
    cube_fp = cube_fingerprint(ctx.catalog, ctx.items, ctx.search_req, spec, headers=ctx.inputs.headers)
    _refuse_other_request(out / "mosaic.zarr", cube_fp)
    # a cube.zarr of this request (complete, or left by a --keep-cube run that was stopped) is
    # reused or resumed: one request, one picture, whichever way the run was started
    stored = store_state(out / "cube.zarr", cube_fp)
    streaming = job.stream and stored not in ("complete", "partial")
    if job.stream and stored == "partial":
        echo(f"an interrupted --keep-cube run left {out / 'cube.zarr'} for this request: resuming it instead of streaming")
    # block reads serve the per-pixel model and the per-pixel composites (memory flat in the area);
    # least-cloudy needs the area's choice of date first, a spatial model its halo: a lazy cube
    per_pixel = ctx.method in STREAMED_COMPOSITES or (ctx.method == "model" and is_pixelwise(ctx.model))
    blocks = streaming and spec.mask.source == "scl" and per_pixel
    if streaming:
        cube = lazy_cube(ctx.items, ctx.search_req, spec, skip_bad_assets=job.skip_bad_assets, template=blocks)
        cube.attrs["cloudfree:fingerprint"] = json.loads(json.dumps(cube_fp))  # as a store keeps it
        echo("cube streamed: read from the assets block by block, no cube.zarr (--stream)")
        no_data, seen, exact = _dates_sampled_without_data(ctx.items, cube, spec, fail_on_error=not job.skip_bad_assets)
        src = CubeSource("blocks" if blocks else "lazy", cube, no_data, seen, exact,
                         failed_reads=asset_reads(out / "mosaic.zarr", "computing"))
    else:
        res = build_cube(ctx.stac_url, ctx.search_req, spec, out / "cube.zarr", items=ctx.items, source=ctx.catalog,
                         inputs=ctx.inputs,
                         progress=ctx.progress and ctx.progress("cube (date x tile)"),
                         regions_at_once=max(1, 4 * job.blocks_at_once),  # one date each: small
                         skip_bad_assets=job.skip_bad_assets)
        echo(f"cube {res.status}: {res.path}")
        cube = open_cube(out / "cube.zarr")
        small = cube["clear"].size <= SMALL_MASK  # a larger stored cube is not read twice for this
        src = CubeSource("stored", cube, _dates_without_data(cube), int(cube["clear"].sum().compute()) if small else None,
                         True, res.skipped)
    src.cube.attrs["inputs"] = json.dumps(ctx.inputs.to_attrs())
    _say_dates_and_grid(ctx, src)
    if blocks:  # read per block on the bands' own grids, enlarged on the model's device
        from .cube.block_reads import block_reads

        src.reads = block_reads(ctx.items, ctx.search_req.aoi, spec, times=cube.time.values,
                                 fail_on_error=not job.skip_bad_assets,
                                 read_ahead=min(job.blocks_at_once, MAX_READ_AHEAD))
    return src


STREAMED_COMPOSITES = ("median", "interpolation", "mosaicking")
"""Compositing methods a streamed run computes from block reads, like the model (per pixel)."""


def _refuse_other_request(mosaic: Path, cube_fp: dict) -> None:
    """An output store made from other inputs is refused now, before any read or file is written
    (the outputs' full fingerprint, recipes included, is known only after validation)."""
    from .errors import StoreError
    from .zarrstore import FINGERPRINT, stored_attrs

    attrs = stored_attrs(mosaic)
    if attrs is None:
        return
    if FINGERPRINT not in attrs:
        raise StoreError(f"{mosaic} exists but is not a cloudfree store; delete it or choose another --out")
    if attrs[FINGERPRINT].get("cube") != json.loads(json.dumps(cube_fp)):
        raise StoreError(f"{mosaic} was written for a different request (other dates, area, bands, catalog or "
                         "inputs); delete it or choose another --out")


SMALL_MASK = 100_000_000
"""A stored cube's clear mask is counted before the work when it has at most this many values."""


def _say_dates_and_grid(ctx: RunContext, src: CubeSource) -> None:
    """Dates without data (an error if every date) and the output grid, before any pixel is computed."""
    cube, no_data, echo = src.cube, src.no_data, ctx.echo
    if len(no_data) == cube.sizes["time"]:
        raise DataError(f"the inputs hold no data over the area on any of the {len(no_data)} dates: check the "
                         "items' footprints and proj:epsg / proj:transform, and the --bbox/--aoi")
    if src.clear_seen == 0:
        classes = list(ctx.spec.mask.unusable)
        if src.clear_exact:
            raise DataError(f"no date has a clear pixel over the area: all {cube.sizes['time']} dates are cloudy, shadowed "
                            f"or without data under the mask (SCL classes {classes}); widen --start/--end or "
                            "--context-days, or raise --max-cloud")
        echo("warning: the mask sampled on a coarse grid shows no clear pixel on any date: the images may be empty")
    if no_data:
        echo(f"warning: no data was read over the area on {len(no_data)} of {cube.sizes['time']} dates "
             f"({', '.join(no_data[:5])}{' ...' if len(no_data) > 5 else ''}); check those items' footprints and "
             "proj:epsg — they count as cloudy")
    zones = ctx.request.aoi.utm_zones() if ctx.request.aoi is not None else []
    echo(f"output CRS {cube.rio.crs} at {ctx.spec.resolution:g} m, bands {', '.join(ctx.spec.bands)}" +
         (f" (the AOI spans UTM zones {zones}; everything is reprojected to this one CRS)" if len(zones) > 1 else ""))


def _reconstruct(ctx: RunContext, src: CubeSource) -> object:
    """The validate and reconstruct stages: every period's candidates measured on held-out pixels
    of windows of the run's grid (read from the assets where the cube is a block-read template),
    then the lazy output Dataset, each period by its validated recipe (``validation`` attribute)."""
    job = ctx.job
    read = None
    if src.kind == "blocks":  # the cube is a template: windows read and decoded as the blocks are
        from .reconstruct.reads_numpy import window_reader_from_reads

        read = window_reader_from_reads(src.reads, src.cube.time.values)
    return reconstruct(src.cube, ctx.request.start, ctx.request.end, period=job.period_step, method=job.method,
                       model=ctx.model, context_days=job.context_days, max_dates=job.max_dates, tiles=job.tiles,
                       chunk=ctx.spec.chunk, fill_unobserved=job.fill_unobserved, reads=src.reads,
                       validation=job.validation, read_window=read, echo=ctx.echo)


def _fingerprint(ctx: RunContext, src: CubeSource, ds) -> dict:
    """What identifies the outputs (a resumed run must match it): the request and the recipe, not
    how it is computed (device, batch, compiled or eager, memory budget, streamed or stored)."""
    tiles = asdict(ctx.job.tiles)
    for how in ("batch", "device", "compile"):
        tiles.pop(how, None)
    job_fp = {k: v for k, v in asdict(ctx.job).items()
              if k not in ("blocks_at_once", "memory", "skip_bad_assets", "max_pixels", "stream")}
    return {"cube": json.loads(json.dumps(dict(src.cube.attrs).get("cloudfree:fingerprint", {}))),
            "job": {**job_fp, "method": ds.attrs["method"], "tiles": tiles, "model": _model_digest(ctx.model),
                    "recipes": {k: v["recipe_text"] for k, v in ImageProvenance.from_attrs(ds.attrs).validation.items()}}}


def _tile_of(region: dict) -> tuple[int, int]:
    """Regions of one output tile (every period of it) are written by one graph: a period's
    filled pixels come from its neighbouring periods, which are then computed once, not per period."""
    return region["y"].start, region["x"].start


def _write(ctx: RunContext, src: CubeSource, ds) -> dict:
    """The write stage: Zarr region by region (panel by panel for block reads), COGs, PNGs, Items."""
    from .reconstruct.model_reads import panel_of

    with src.failed_reads if src.failed_reads is not None else contextlib.nullcontext() as failed:
        res = write_outputs(ds, ctx.out, fingerprint=_fingerprint(ctx, src, ds), cog=ctx.job.cog,
                            echo=ctx.echo, stop_after=ctx.stop_after,
                            # block reads share margins with their neighbours: one graph per panel
                            # reads each once (the scheduler holds a panel's tasks, not the area's)
                            group_by=partial(panel_of, chunk=src.reads.chunk) if src.reads is not None else
                            (_tile_of if ctx.job.fill_unobserved and ds.sizes["time"] > 1 else None),
                            regions_at_once=ctx.job.blocks_at_once,
                            progress=ctx.progress and ctx.progress("outputs (period x tile)"))
    if failed is not None:
        src.skipped = sorted(set(failed.messages))
    if src.skipped:
        ctx.echo(f"warning: {len(src.skipped)} asset reads failed and were treated as nodata (--skip-bad-assets): "
                 + "; ".join(src.skipped[:3]))
    return res


def _check(ctx: RunContext, res: dict, ds) -> dict:
    """The check stage: the written outputs read back (values, files); a failure is recorded in
    ``run.json`` and raised, never left looking complete."""
    from .outputs.checks import OutputCheckError, check_files, check_outputs

    try:
        checks = check_outputs(res["zarr"])
        check_files(res["periods"], res["digest"])
    except OutputCheckError as exc:
        write_atomic(ctx.out / "run.json", json.dumps({"status": "failed_checks", "reason": str(exc),
                                                      "method": ds.attrs["method"], "mosaic": res["zarr"]}, indent=1))
        raise
    for w in checks["warnings"]:
        ctx.echo(f"warning: {w}")
    return checks


def _manifest(ctx: RunContext, src: CubeSource, ds, res: dict, checks: dict) -> dict:
    """The manifest stage: what ``run.json`` records (a :class:`~cloudfree.provenance.RunManifest`)."""
    cube, spec = CubeProvenance.from_attrs(src.cube.attrs), ctx.spec
    images = ImageProvenance.from_attrs(ds.attrs)
    return RunManifest(
        status="complete", periods=res["periods"], method=images.method, method_reason=images.method_reason,
        mosaic=res["zarr"], items=res.get("items"), model=str(ctx.model) if images.model else None,
        cube=str(ctx.out / "cube.zarr") if src.kind == "stored" else None, streamed=src.kind != "stored",
        block_reads=src.reads.describe() if src.reads is not None else None, bands=list(spec.bands),
        resolution=spec.resolution, crs=str(src.cube.rio.crs), shape=res["shape"],
        masked_scl_classes=list(spec.mask.unusable), mask=cube.mask or None, mask_source=cube.mask_source,
        mask_config=cube.mask_config, device=ctx.job.tiles.device, synthetic_input=cube.synthetic,
        dates_without_data=src.no_data, dropped_inputs=dict(ctx.inputs.dropped),
        reprojected_inputs=list(ctx.inputs.reprojected), skipped_assets=src.skipped,
        pixels_without_clear_observation=res["no_clear_pixels"], pixels_filled=res.get("filled_pixels", 0), checks=checks, validation=images.validation).to_dict()


def _check_visible_on_workers(model) -> None:
    """Workers load the checkpoint from its path: every worker of the active cluster must see it."""
    if not isinstance(model, (str, Path)):
        return
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no cluster: the local threads see what this process sees
        return
    import os

    seen = client.run(os.path.exists, str(model))
    blind = sorted(w for w, ok in seen.items() if not ok)
    if blind:
        raise InputError(f"the model {model} is not visible on {len(blind)} worker(s) ({', '.join(blind[:3])}): put it "
                         "on a path every worker sees (a shared file system) or pass --model with such a path")


def _size_check(items, request: SearchRequest, spec: CubeSpec, job: JobConfig, echo) -> None:
    """Print what the run will make (pixels, dates, bytes) and refuse an area above ``job.max_pixels``."""
    from .cube.load import plan_geobox

    zones = request.aoi.utm_zones() if request.aoi is not None else []
    if len(zones) > 3 and spec.crs is None:
        raise InputError(f"the area spans {len(zones)} UTM zones ({zones[0]}..{zones[-1]}): one grid in one zone's CRS "
                         "would be distorted far from it. Check --bbox (west,south,east,north in degrees), split the "
                         "area (pipelines/regional_mosaic.py), or give --crs")
    gb = plan_geobox(items, request.aoi, spec)
    ny, nx = gb.shape
    from .bands import native_resolution

    if min(ny, nx) < 2 and spec.resolution > native_resolution(spec.bands):  # a tiny area at native resolution is fine
        raise InputError(f"the area is {ny} x {nx} px at {spec.resolution:g} m: choose a finer --resolution (the bands' "
                         "native 10/20/60 m) or a larger --bbox/--aoi")
    px, nb = ny * nx, len(spec.bands)
    days = len({str(i.datetime)[:10] for i in items})
    cube_gb = px * nb * days * 2 / 1e9
    import os

    # measured: the default model through the whole pipeline, 0.091 Mpx/s on 2 CPU cores
    # (benchmarks/results/pipeline_cpu_2core.jsonl); a rough guide that scales with cores, not a promise
    cpu_s = px / (0.045e6 * (os.cpu_count() or 1))
    took = "under a minute" if cpu_s < 60 else f"roughly {cpu_s / 60:.0f} min"
    stored = (f"cube about {cube_gb:.2g} GB on disk before compression" if not job.stream else
              f"streamed, no cube stored ({cube_gb:.2g} GB of data read)")
    peak = f"; estimated peak memory {job.memory.peak_for(ny, nx) / 2**30:.2g} GiB" if job.memory is not None else ""
    echo(f"size: {ny} x {nx} px ({px / 1e6:.2g} Mpx) at {spec.resolution:g} m, {days} dates, {nb} bands: {stored}; "
         f"{took} per output image on this machine's CPU (less on a GPU){peak}")
    if job.max_pixels is not None and px > job.max_pixels:
        raise InputError(f"the area is {px / 1e6:,.0f} million pixels ({ny} x {nx} at {spec.resolution:g} m; a cube of "
                         f"about {cube_gb:,.0f} GB), above --max-pixels {job.max_pixels / 1e6:,.0f} million: check "
                         "--bbox (west,south,east,north in degrees) and --resolution, or pass --yes to run it")


def _dates_sampled_without_data(items, cube, spec: CubeSpec, *, fail_on_error: bool = True,
                                side: int = 64) -> tuple[list[str], int | None, bool]:
    """``(dates with no pixel of data over the area, clear observations seen, exact)`` for a
    streamed run (no cube is read first): each date's first band and SCL are read at most ``side``
    px across over the output grid (the COGs' overviews: a few KB per date), through odc-stac and
    the items' own projection metadata, so a date whose items lie elsewhere (e.g. a wrong
    proj:epsg) is named, as the stored cube names it, and a series with no clear pixel is told
    before any pixel work (exactly where the grid is no larger than ``side``)."""
    import numpy as np
    import odc.stac

    from .bands import SCL
    from .cube.load import band_mapping

    gb = cube.odc.geobox
    factor = max(1, -(-max(gb.shape) // side))
    small = gb.zoom_out(factor)
    mapping = band_mapping(items, spec.bands)
    name = mapping[spec.bands[0]]
    scl = mapping.get(SCL) if spec.mask.source == "scl" else None
    ds = odc.stac.load(items, bands=[name] + ([scl] if scl else []), geobox=small, groupby="solar_day", chunks=None,
                       resampling="nearest", fail_on_error=fail_on_error)
    if ds.sizes["time"] != cube.sizes["time"]:
        raise RuntimeError(f"odc-stac grouped the items into {ds.sizes['time']} dates, the cube {cube.sizes['time']}")
    nodata = ds[name].attrs.get("nodata", 0)
    has = (ds[name] != nodata).any(("y", "x")).values
    days = [str(t)[:10] for t in cube.time.values.astype("datetime64[D]")]
    seen = None
    if scl:
        classes = ds[scl].values
        seen = int(((ds[name].values != nodata) & (classes != 0) & ~np.isin(classes, list(spec.mask.unusable))).sum())
    return [d for d, h in zip(days, has) if not h], seen, factor == 1


def _dates_without_data(cube) -> list[str]:
    """Dates with no pixel of data over the area (e.g. an item with a wrong ``proj:epsg``): from SCL,
    whose class 0 is "no data", or from the reflectance where the items had no SCL."""
    if "no SCL asset" in cube.attrs.get("mask", "") or "scl" not in cube:
        has = cube["reflectance"].notnull().all("band").any(("y", "x"))
    else:
        has = (cube["scl"] != 0).any(("y", "x"))
    has = has.compute().values
    return [str(t)[:10] for t, h in zip(cube.time.values, has) if not h]


def run(stac: str, start: str, end: str, out: str | Path, *, bbox=None, aoi=None, bands=None, method: str = "auto",
        model=None, period: str | None = None, collection: str | None = None, max_cloud_cover: float | None = None,
        resolution: float | None = None, crs: str | None = None, chunk: int | None = None, exclude_scl=None,
        context_days: int = 30, max_dates: int = 12, device: str = "auto", patch: int = 256, overlap: int = 16,
        batch: int | None = None, fill_unobserved: bool = True, memory_limit: str | int | None = None,
        mask: str = "scl", dilate: int = 0, stream: bool = True, native_reads: bool = True, validate: bool = True,
        echo=print) -> dict:
    """The whole job, as ``cloudfree run`` does it, from a notebook: returns the manifest.

    ``stac``: an API URL, ``earth-search``, ``planetary-computer``, a static ``catalog.json`` /
    ``collection.json`` or an item file. Give ``bbox`` (west, south, east, north in degrees) or
    ``aoi`` (GeoJSON). Computes with the active Dask client if there is one (else Dask's threads).
    ``chunk`` and ``batch`` default to what ``memory_limit`` (default: 80 % of the machine) allows.
    ``stream=True`` (the default, as the CLI's) computes the outputs from the assets without storing
    ``cube.zarr`` (see :attr:`JobConfig.stream`); ``stream=False`` stores the cube first. ``native_reads``: see :attr:`CubeSpec.native_reads`.
    ``validate`` (default on): the run measures its candidates on its own series and, with
    ``method="auto"``, uses per period what validated best (see :attr:`JobConfig.validation`).
    """
    import os

    from .reconstruct.tiles import resolve_device

    req = JobRequest.from_options(
        stac, start, end, out, bbox=bbox, aoi=aoi, bands=bands, exclude_scl=exclude_scl, mask=mask, dilate=dilate,
        collection=collection, max_cloud_cover=max_cloud_cover, crs=crs, resolution=resolution, chunk=chunk,
        native_reads=native_reads, method=method, model=model, period=period, context_days=context_days,
        max_dates=max_dates, device=device, patch=patch, overlap=overlap, batch=batch, fill_unobserved=fill_unobserved,
        stream=stream, validate=validate, memory_limit=memory_limit)
    gpu = resolve_device(device).startswith("cuda")
    plan = req.plan(os.cpu_count() or 1, gpu=gpu)
    with open_catalog(stac) as url:
        return run_job(url, req.search_request(), req.cube_spec(plan.chunk), out, req.job_config(plan, device),
                       echo=echo, source=source_id(stac))


def run_request(req: JobRequest, cluster, *, progress=None, echo=print) -> dict:
    """Run a :class:`~cloudfree.job.JobRequest` on ``cluster`` (a
    :class:`~cloudfree.cluster.ClusterConfig`: started here, or joined) as ``cloudfree run`` does:
    the device is decided where the model runs, the memory plan for the cluster's workers."""
    from .cluster import dask_client, fit_to_plan
    from .progress import interrupt_guard
    from .reconstruct.tiles import resolve_device

    if cluster.scheduler or cluster.gpus:
        # the workers decide: a CPU laptop driving a GPU cluster runs the model on the workers' GPUs
        device, where = req.device, "on each worker" if req.device == "auto" else "on the workers"
    else:
        device, where = resolve_device(req.device), "here"
    plan, cluster = fit_to_plan(cluster, lambda threads: req.plan(threads, gpu=device.startswith("cuda") or bool(cluster.gpus)))
    echo(plan.describe())
    if req.resume_chunk and req.chunk and req.chunk != req.resume_chunk:
        echo(f"note: {req.out} holds blocks of {req.resume_chunk} px; the run goes on with them (--chunk {req.chunk} "
             "applies to a new --out)")
    echo(f"inference device: {device} ({where})" + (f"; one worker per GPU: {', '.join(cluster.gpus)}" if cluster.gpus else ""))
    with interrupt_guard(), open_catalog(req.stac) as url:
        # search, input checks, size and model before the cluster: their errors come first, fast
        ctx = prepare_run(url, req.search_request(), req.cube_spec(plan.chunk), req.out, req.job_config(plan, device),
                          echo=echo, source=source_id(req.stac))
        with dask_client(cluster, echo=echo), (progress if progress is not None else contextlib.nullcontext()) as bar:
            return execute_run(replace(ctx, progress=bar))


def write_cube(req: JobRequest, cluster, *, progress=None, echo=print):
    """Search and write the time cube (reflectance + clear mask) of ``req`` to the Zarr store at
    ``req.out`` on ``cluster``, as ``cloudfree cube`` does; resumes an interrupted store."""
    from .cluster import dask_client, fit_to_plan, parse_memory, plan_memory
    from .progress import interrupt_guard

    plan, cluster = fit_to_plan(cluster, lambda threads: plan_memory(
        parse_memory(req.memory_limit), threads=threads, n_bands=req.n_bands, n_dates=1, chunk=req.chunk))
    echo(plan.describe())
    with interrupt_guard(), open_catalog(req.stac) as url, dask_client(cluster, echo=echo), \
            (progress if progress is not None else contextlib.nullcontext()) as bar:
        return build_cube(url, req.search_request(), req.cube_spec(plan.chunk), req.out, progress=bar,
                          skip_bad_assets=req.skip_bad_assets, source=source_id(req.stac),
                          regions_at_once=4 * plan.in_flight)
