"""One run, as asked: a frozen, validated :class:`JobRequest` that ``cloudfree run``, ``cloudfree
demo``, :func:`cloudfree.run` and the pipelines all build with :meth:`JobRequest.from_options`.

Everything a user can get wrong (dates, area, bands, method, period, device, mask classes) is
parsed and checked here, once, before any search, read or cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .aoi import AOI, parse_aoi, parse_bbox
from .bands import DEFAULT_UNUSABLE_SCL, L2A_BANDS, validate_bands
from .catalog.search import SearchRequest
from .cube.spec import CubeSpec, MaskConfig
from .errors import InputError
from .reconstruct.validation import ValidationConfig
from .reconstruct.tiles import TileConfig

__all__ = ["JobRequest", "JobConfig", "parse_area"]


def parse_area(bbox=None, aoi=None, *, optional: bool = False) -> AOI | None:
    """The area from ``bbox`` (west, south, east, north in degrees, or ``"w,s,e,n"``) or ``aoi``
    (GeoJSON: a dict, a string or a file); ``None`` where ``optional`` and neither is given (a
    static catalog or item file: every item, on its own grid)."""
    if isinstance(bbox, AOI) or isinstance(aoi, AOI):
        return bbox if isinstance(bbox, AOI) else aoi
    if optional and bbox is None and aoi is None:
        return None
    if (bbox is None) == (aoi is None):
        raise InputError("give exactly one of --bbox (west,south,east,north) or --aoi (GeoJSON)"
                         + ("" if optional else "; they are optional only for a static catalog or item file"))
    return parse_bbox(bbox) if bbox is not None else parse_aoi(aoi)


@dataclass(frozen=True)
class JobConfig:
    """Everything after the search: how to make the outputs."""

    method: str = "auto"
    """``auto`` (the model where it serves the cube's bands, else the median), ``model``, or a
    compositing method: median, mosaicking, least_cloudy, interpolation."""
    model: str | None = None
    """Checkpoint path (default: the shipped weights)."""
    period_step: str | None = None
    """None (one image), ``month`` or ``ND``."""
    context_days: int = 30
    max_dates: int = 12
    tiles: TileConfig = field(default_factory=TileConfig)
    fill_unobserved: bool = True
    """Pixels without a clear observation in their period's window take a value from the
    neighbouring periods (flagged in ``filled``); False leaves them nodata."""
    cog: bool = True
    max_pixels: float | None = None
    """Refuse (before any read) an output grid larger than this; None: no limit."""
    skip_bad_assets: bool = False
    """Treat unreadable assets as nodata (listed in ``run.json`` and the cube) instead of stopping."""
    blocks_at_once: int = 2
    memory: object = None
    """The :class:`~cloudfree.cluster.MemoryPlan` the run was planned under (how, not what: its
    estimate is told for the area once the search has found it)."""
    """Output blocks (period × tile) computed together: with the chunk size, what bounds memory
    (see :func:`cloudfree.cluster.plan_memory`)."""
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    """The run's self-validation (on by default): every period's candidates measured on held-out
    clear pixels of the series itself; with ``method="auto"`` each period uses what validated best."""
    stream: bool = False
    """Compute the outputs straight from the assets (read → mask → infer → write per block) without
    storing ``cube.zarr``; a complete cube store for the same request is still reused. Resumes
    per output block. Dates without data are then judged from the items' footprints only. With a
    per-pixel model and the SCL mask, every date × block is read on the bands' own grids and the
    coarse bands are enlarged, masked and counted on the model's device
    (:mod:`cloudfree.cube.block_reads`, :mod:`cloudfree.reconstruct.model_reads`). ``cloudfree run`` and
    :func:`run` stream by default (``--keep-cube`` / ``stream=False`` store the cube first)."""


@dataclass(frozen=True)
class JobRequest:
    """One run of the whole job, every option parsed (see ``cloudfree run --help`` for each)."""

    stac: str
    start: str
    end: str
    out: Path
    aoi: AOI | None = None
    bands: tuple[str, ...] | None = None
    collection: str | None = None
    max_cloud_cover: float | None = None
    crs: str | None = None
    resolution: float | None = None
    chunk: int | None = None
    mask: MaskConfig = field(default_factory=MaskConfig)
    native_reads: bool = True
    method: str = "auto"
    model: object = None
    period: str | None = None
    context_days: int = 30
    max_dates: int = 12
    device: str = "auto"
    patch: int = 256
    overlap: int = 16
    batch: int | None = None
    pass_through: bool = True
    compile: bool = False
    fill_unobserved: bool = True
    skip_bad_assets: bool = False
    max_pixels: float | None = None
    stream: bool = True
    validate: bool = True
    memory_limit: str | int | None = "auto"

    @classmethod
    def from_options(cls, stac: str, start, end, out, *, bbox=None, aoi=None, bands=None, exclude_scl=None,
                     mask: str = "scl", dilate: int = 0, **options) -> "JobRequest":
        """Parse and check the options as the command line spells them (``bands="B02,B03"``,
        ``exclude_scl="0,1,3"``, ``bbox="w,s,e,n"``); errors name the option."""
        from .catalog.sources import is_static_source
        from .reconstruct.composites import METHODS
        from .reconstruct.periods import check_period
        from .reconstruct.tiles import check_device

        from .catalog.locations import check_source
        from .catalog.search import as_day

        check_source(str(stac))
        if options.get("crs") is not None:
            from .cube.load import check_crs

            check_crs(options["crs"])
        start, end = as_day(start), as_day(end)
        area = parse_area(bbox, aoi, optional=is_static_source(stac))
        req = cls(str(stac), str(start), str(end), Path(out), area, validate_bands(bands),
                  mask=MaskConfig.from_classes(exclude_scl if exclude_scl is not None else DEFAULT_UNUSABLE_SCL,
                                               source=mask, dilate=dilate), **options)
        if req.method not in ("auto", "model", *METHODS):
            raise InputError(f"unknown --method {req.method!r}; choose auto, model, {', '.join(METHODS)}")
        check_period(req.period)
        check_device(req.device)
        from .models.checkpoint import model_path

        object.__setattr__(req, "model", model_path(req.model))
        if req.mask.source != "scl":
            from .cube.masks import mask_model_available

            missing = mask_model_available()
            if missing:
                raise InputError(f"--mask {req.mask.source} needs the learned cloud mask: {missing}")
        req.search_request()  # the dates and cloud cover, checked now
        return req

    @property
    def n_bands(self) -> int:
        """Bands the run will load (every L2A band when the catalog decides)."""
        return len(self.bands) if self.bands else len(L2A_BANDS)

    def search_request(self) -> SearchRequest:
        return SearchRequest(self.aoi, self.start, self.end, self.collection, self.max_cloud_cover)

    def cube_spec(self, chunk: int) -> CubeSpec:
        return CubeSpec(bands=self.bands, crs=self.crs, resolution=self.resolution, chunk=chunk, mask=self.mask,
                        native_reads=self.native_reads)

    def job_config(self, plan, device: str):
        """The :class:`JobConfig` under a memory ``plan`` on ``device``."""
        tiles = TileConfig(patch=self.patch, overlap=self.overlap, batch=self.batch or plan.batch, device=device,
                           pass_through=self.pass_through, compile=self.compile)
        return JobConfig(method=self.method, model=self.model, period_step=self.period, context_days=self.context_days,
                         max_dates=self.max_dates, tiles=tiles, fill_unobserved=self.fill_unobserved,
                         max_pixels=self.max_pixels, skip_bad_assets=self.skip_bad_assets,
                         blocks_at_once=plan.in_flight, memory=plan, stream=self.stream,
                         validation=ValidationConfig(enabled=self.validate))

    def plan(self, threads: int, gpu: bool):
        """The memory plan (block size, blocks at once) for ``threads`` per worker."""
        from .cluster import parse_memory, plan_memory

        return plan_memory(parse_memory(self.memory_limit), threads=threads, n_bands=self.n_bands,
                           n_dates=self.max_dates, chunk=self.resume_chunk or self.chunk, streamed=self.stream, gpu=gpu)

    @property
    def resume_chunk(self) -> int | None:
        """The block size of the outputs (or cube) already in ``out``: a resume keeps it."""
        from .zarrstore import stored_chunk

        return stored_chunk(self.out / "mosaic.zarr") or stored_chunk(self.out / "cube.zarr")
