"""The reconstructed Dataset → ``mosaic.zarr`` (region by region, resumable) → per period a COG,
a quicklook PNG and a STAC Item, plus ``items.json``: an ItemCollection of every period that
odc-stac and ``cloudfree cube --stac`` read back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable
from pathlib import Path

import pystac
import xarray as xr

from ..provenance import ImageProvenance

from ..zarrstore import store_state, write_by_regions
from .cog import CogPlan
from .folder import record_files, refuse_links, set_aside_stale, unchanged_files, write_atomic
from .files import cog_is_current, cog_plan, write_cog, write_quicklook, write_stac_item, write_uncertainty_cog

__all__ = ["write_outputs", "OutputsResult"]


class OutputsResult(dict):
    """``status`` (written/resumed/reused/interrupted), ``zarr``, ``items`` (items.json) and, per
    period label, its files: ``periods[label] = {"cog", "quicklook", "stac_item", "zarr"}``."""


def _encoding(ds: xr.Dataset) -> dict:
    cy, cx = ds.chunks["y"][0], ds.chunks["x"][0]
    nb = ds.sizes["band"]
    enc = {"reflectance": {"dtype": "float32", "chunks": (1, nb, cy, cx)},
           "clear_count": {"chunks": (1, cy, cx)}, "no_clear": {"chunks": (1, cy, cx)}}
    if "filled" in ds:
        enc["filled"] = {"chunks": (1, cy, cx)}
    if "uncertainty" in ds:
        enc["uncertainty"] = {"dtype": "float32", "chunks": (1, cy, cx)}
    return enc


class _CogTiles:
    """``after_write`` of the mosaic's regions: compress a region's tiles into its period's COG
    parts from what the Zarr holds (just written: read from the page cache). Picklable, so it runs
    on any worker; it never touches the model's tasks, so they keep their GPU placement."""

    def __init__(self, plans: dict[int, CogPlan], zarr_path: Path):
        self.plans, self.zarr_path = plans, str(zarr_path)

    def __call__(self, region: dict) -> None:
        import zarr

        plan = self.plans.get(region["time"].start)
        if plan is not None:
            refl = zarr.open_array(self.zarr_path + "/reflectance", mode="r")
            t, y, x = region["time"].start, region["y"], region["x"]
            plan.region(y.start, x.start, refl[t, :, y, x])


def _default_fingerprint(ds: xr.Dataset) -> dict:
    from dask.base import tokenize

    return {"attrs": {k: str(v) for k, v in ds.attrs.items()}, "graph": tokenize(ds)}


def write_outputs(ds: xr.Dataset, out_dir: str | Path, *, fingerprint: dict | None = None, cog: bool = True,
                  progress=None, stop_after: int | None = None, echo=print,
                  regions_at_once: int | None = 2, group_by: Callable[[dict], Hashable] | None = None) -> OutputsResult:
    """Write ``ds`` (from :func:`cloudfree.reconstruct`) into ``out_dir``.

    ``fingerprint`` identifies the request (default: the Dataset's attributes and graph token): the
    same fingerprint reuses or resumes ``mosaic.zarr``, another one is refused; COGs carry its digest
    and are rewritten whenever it changes. Item ids are ``cloudfree-<period>-<digest>``: unique per
    period and per request. ``regions_at_once`` and ``group_by``: how regions are computed
    together (:func:`cloudfree.zarrstore.write_by_regions`'s ``batch`` and ``group_by``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refuse_links(out)
    fingerprint = fingerprint if fingerprint is not None else _default_fingerprint(ds)
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:10]
    zpath = out / "mosaic.zarr"
    # The COGs' tiles are compressed beside each region's write, on the region's values; an
    # interrupted run keeps them for the next (a mosaic written anew starts them anew too).
    state = store_state(zpath, fingerprint)
    plans = {t: cog_plan(ds, out / f"cloudfree_{v}.tif", digest) for t, v in enumerate(ds.period.values)} \
        if cog and state != "complete" else {}
    for plan in plans.values():
        plan.prepare(fresh=state != "partial")
    status = write_by_regions(ds, zpath, fingerprint, encoding=_encoding(ds), batch=regions_at_once, group_by=group_by,
                              on_region=progress, stop_after=stop_after,
                              after_write=_CogTiles(plans, zpath) if plans else None)
    if status == "interrupted":
        return OutputsResult(status="interrupted", zarr=str(zpath))
    echo(f"mosaic {status}: {zpath}")
    res = xr.open_zarr(zpath, decode_coords="all")
    prov = ImageProvenance.from_attrs(ds.attrs)
    synthetic, masked, input_dates, validation = (prov.synthetic_input, prov.masked_scl_classes, prov.input_dates,
                                                  prov.validation)
    props = {"cloudfree:method": prov.method, "cloudfree:method_reason": prov.method_reason,
             "cloudfree:masked_scl_classes": masked, "cloudfree:mask": prov.mask,
             "cloudfree:mask_source": prov.mask_source, "cloudfree:mask_config": prov.mask_config,
             "cloudfree:synthetic_input": synthetic, "processing:software": {"cloudfree": _version()},
             "cloudfree:dropped_inputs": prov.inputs.get("dropped", {}),
             "cloudfree:reprojected_inputs": prov.inputs.get("reprojected", []),
             "description": "Cloud-free composite made by cloudfree" + (" from SYNTHETIC demo data" if synthetic else "")}
    tags = {"cloudfree_fingerprint": digest, "method": props["cloudfree:method"],
            "masked_scl_classes": json.dumps(masked), "synthetic_input": str(synthetic),
            "mask_source": props["cloudfree:mask_source"]}
    periods: dict[str, dict[str, str]] = {}
    items = []
    intact = unchanged_files(out, [out / f"cloudfree_{v}{s}.tif" for v in res.period.values for s in ("", "_uncertainty")])
    for t, label in enumerate(str(v) for v in res.period.values):
        assets: dict[str, Path] = {"zarr": zpath}
        if cog:
            assets.update(_period_cogs(res, t, out / f"cloudfree_{label}.tif", plans.get(t), digest, tags, intact, echo))
        png = write_quicklook(res, t, out / f"cloudfree_{label}.png", synthetic=synthetic, cog=assets.get("cog"))
        assets["quicklook"] = png
        files = {k: str(v) for k, v in assets.items()}
        if cog:
            item_path = out / f"cloudfree_{label}.stac.json"
            items.append(write_stac_item(res, t, assets, item_path, item_id=f"cloudfree-{label}-{digest}",
                                         properties={**props, "cloudfree:input_dates": input_dates.get(label, []),
                                                     **_validation_properties(validation.get(label))}))
            files["stac_item"] = str(item_path)
        periods[label] = files
    record_files(out, [p for files in periods.values() for k, p in files.items() if k in ("cog", "uncertainty")])
    stale = set_aside_stale(out, {Path(v).name for files in periods.values() for v in files.values()})
    if stale:
        echo(f"note: {len(stale)} file(s) of an earlier request in {out} are not part of this run and were moved to "
             f"{out / '.stale'}: {', '.join(stale[:4])}{' ...' if len(stale) > 4 else ''}")
    result = OutputsResult(status=status, zarr=str(zpath), periods=periods, digest=digest,
                           shape={k: int(v) for k, v in res.sizes.items()},
                           no_clear_pixels=int(res["no_clear"].sum().compute()),
                           filled_pixels=int(res["filled"].sum().compute()) if "filled" in res else 0)
    if items:
        result["items"] = str(_write_catalog(out, items))
    return result


def _period_cogs(res, t: int, path: Path, plan, digest: str, tags: dict, intact: set[str], echo) -> dict[str, Path]:
    """The period's COG (and uncertainty COG): finished from its ``plan``, kept where current and
    unchanged since written (verified like the Zarr's chunks), else written from the mosaic."""
    current = plan is not None or cog_is_current(path, digest)
    rewritten = plan is not None or not current or path.name not in intact
    if current and plan is None and path.name not in intact and path.exists():
        echo(f"warning: {path} changed since it was written (or was not recorded): written again from the mosaic")
    if rewritten:
        write_cog(res, t, path, tags=tags, plan=plan)
    files = {"cog": path}
    if "uncertainty" in res:
        side = path.with_name(path.stem + "_uncertainty.tif")
        if rewritten or side.name not in intact:  # it goes with the COG: current while the COG is
            write_uncertainty_cog(res, t, side)
        files["uncertainty"] = side
    return files


def _write_catalog(out: Path, items: list[pystac.Item]) -> Path:
    """``collection.json`` (the items' collection, linking each ``.stac.json``), each item linked
    to it, and ``items.json``: the ItemCollection with absolute hrefs, which plain
    ``pystac.ItemCollection.from_file`` + ``odc.stac.load`` read without a self link."""
    import datetime as dt

    bbox = [min(i.bbox[0] for i in items), min(i.bbox[1] for i in items), max(i.bbox[2] for i in items),
            max(i.bbox[3] for i in items)]
    starts = [dt.datetime.fromisoformat(i.properties["start_datetime"].replace("Z", "+00:00")) for i in items]
    ends = [dt.datetime.fromisoformat(i.properties["end_datetime"].replace("Z", "+00:00")) for i in items]
    coll = pystac.Collection(id=items[0].collection_id or "cloudfree-output",
                             description="Cloud-free images made by cloudfree, one item per period",
                             extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[min(starts), max(ends)]])),
                             license="other", title="cloudfree outputs")
    d = coll.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [{"rel": "item", "href": f"./cloudfree_{i.properties['cloudfree:period']}.stac.json",
                   "type": "application/geo+json"} for i in items]
    write_atomic(out / "collection.json", json.dumps(d, indent=1))
    absolute = []
    for it in items:
        item_path = out / f"cloudfree_{it.properties['cloudfree:period']}.stac.json"
        rel = it.to_dict(include_self_link=False, transform_hrefs=False)
        rel["links"] = [ln for ln in rel.get("links", []) if ln.get("rel") != "collection"] + [
            {"rel": "collection", "href": "./collection.json", "type": "application/json"}]
        write_atomic(item_path, json.dumps(rel, indent=1))
        ab = json.loads(json.dumps(rel))
        for a in ab["assets"].values():
            a["href"] = str((out / a["href"]).resolve())
        ab["links"] = [{"rel": "collection", "href": str((out / "collection.json").resolve()), "type": "application/json"}]
        absolute.append(ab)
    write_atomic(out / "items.json", json.dumps({"type": "FeatureCollection", "features": absolute}, indent=1))
    return out / "items.json"


def _validation_properties(v: dict | None) -> dict:
    """A period's self-validation as STAC properties (``cloudfree:validation_*``)."""
    if not v:
        return {}
    chosen = v.get("scores", {}).get("chosen", {})
    return {"cloudfree:validation_recipe": v["recipe"], "cloudfree:validation_reason": v["reason"],
            "cloudfree:validation_psnr": chosen.get("psnr"), "cloudfree:validation_mae": chosen.get("mae"),
            "cloudfree:validation_mae_per_band": chosen.get("mae_per_band"),
            "cloudfree:validation_pixels": v["n_pixels"], "cloudfree:validation_examples": v["n_examples"],
            "cloudfree:validation_scores": v.get("scores", {}), "cloudfree:validation_thin": v["thin"],
            "cloudfree:from_outside_period": v.get("outside")}


def _version() -> str:
    from ..version import __version__

    return __version__
