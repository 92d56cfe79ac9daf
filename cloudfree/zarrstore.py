"""Zarr stores that are written region by region, resume after an interruption, and are only
marked complete when every region is on disk.

A store carries a *fingerprint* (the request that made it). Re-running with the same fingerprint
reuses a complete store or resumes a partial one; a different fingerprint is refused, so a store
is never silently mixed from two requests.
"""

from __future__ import annotations

from .errors import InputError, StoreError

import itertools
import json
import shutil
import warnings
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path

import dask
import xarray as xr
import zarr

from .heap import release_heap

__all__ = ["StoreError", "store_state", "check_complete", "write_by_regions", "spatial_regions", "write_manifest",
           "verify_manifest", "require_unchanged"]

COMPLETE = "cloudfree:complete"
FINGERPRINT = "cloudfree:fingerprint"
def _manifest(path: Path) -> Path:
    """``<store>.manifest.json`` beside the store (inside it, Zarr readers would warn about a stray file):
    size and CRC32 of every chunk file, written when the store completes; reuse verifies against it."""
    return path.with_name(path.name + ".manifest.json")

warnings.filterwarnings("ignore", message=".*Consolidated metadata.*")
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")  # fixed-width period labels


def _progress_dir(path: Path) -> Path:
    return path.with_name(path.name + ".progress")


def _attrs(path: Path) -> dict | None:
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:
        return None


def store_state(path: str | Path, fingerprint: dict | None = None) -> str:
    """One of ``absent``, ``complete``, ``partial``, ``mismatch``, ``foreign``."""
    path = Path(path)
    if not path.exists():
        return "absent"
    attrs = _attrs(path)
    if attrs is None or FINGERPRINT not in attrs:
        return "foreign"
    if fingerprint is not None and attrs[FINGERPRINT] != json.loads(json.dumps(fingerprint)):
        return "mismatch"
    return "complete" if attrs.get(COMPLETE) else "partial"


def stored_attrs(path: str | Path) -> dict | None:
    """The attributes of the store at ``path``; None where there is no store."""
    path = Path(path)
    return (_attrs(path) or {}) if path.exists() else None


def stored_chunk(path: str | Path) -> int | None:
    """The spatial block (px) of the store at ``path`` (its ``reflectance`` chunks along x); None
    where there is none: a resume keeps the store's blocks whatever ``--chunk`` or the memory budget
    would choose now (they change how a run is computed, not what it makes)."""
    try:
        meta = json.loads((Path(path) / "reflectance" / "zarr.json").read_text())
        return int(meta["chunk_grid"]["configuration"]["chunk_shape"][-1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def check_complete(path: str | Path) -> None:
    """Raise a clear error unless ``path`` is a complete cloudfree store."""
    state = store_state(path)
    if state == "absent":
        raise FileNotFoundError(f"no store at {path}")
    if state == "foreign":
        raise StoreError(f"{path} is not a cloudfree store (no fingerprint); was it written by another tool?")
    if state == "partial":
        raise StoreError(f"{path} is incomplete (an interrupted run); re-run the same command to resume it")


def _chunk_files(path: Path) -> Iterator[Path]:
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.name not in ("zarr.json", ".zattrs", ".zgroup", ".zarray", ".zmetadata"):
            yield f


def write_manifest(path: str | Path) -> None:
    """Record size and CRC32 of every chunk file of a finished store."""
    import zlib

    path = Path(path)
    files = {str(f.relative_to(path)): [f.stat().st_size, zlib.crc32(f.read_bytes())] for f in _chunk_files(path)}
    tmp = _manifest(path).with_suffix(".part")
    tmp.write_text(json.dumps(files))
    tmp.replace(_manifest(path))


def verify_manifest(path: str | Path) -> list[str]:
    """Chunk files missing, added or changed since the store completed (empty: verified)."""
    import zlib

    path = Path(path)
    try:
        want = json.loads(_manifest(path).read_text())
    except (OSError, ValueError):
        return [_manifest(path).name + " (missing: the store was not finished by this version)"]
    have = {str(f.relative_to(path)): f for f in _chunk_files(path)}
    bad = [k for k in want if k not in have]
    bad += [k for k in have if k not in want]
    bad += [k for k, (size, crc) in want.items() if k in have and (have[k].stat().st_size != size or
                                                                   zlib.crc32(have[k].read_bytes()) != crc)]
    return bad


def require_unchanged(path: str | Path) -> None:
    """Raise :class:`StoreError` unless a complete store still matches its manifest: ``reused`` means verified."""
    changed = verify_manifest(path)
    if changed:
        raise StoreError(f"{path} was changed after it was written ({len(changed)} chunk files missing, added or "
                         f"changed, e.g. {', '.join(changed[:3])}); delete it and re-run to recompute it")


def spatial_regions(ds: xr.Dataset, dims: tuple[str, ...] = ("y", "x")) -> list[dict[str, slice]]:
    """One region per chunk of ``ds`` along ``dims`` (regions align with the Zarr chunks)."""
    edges = []
    for d in dims:
        chunks = ds.chunks[d]
        starts = list(itertools.accumulate((0, *chunks[:-1])))
        edges.append([slice(s, s + c) for s, c in zip(starts, chunks)])
    return [dict(zip(dims, r)) for r in itertools.product(*edges)]


def _region_name(region: dict[str, slice]) -> str:
    return "_".join(f"{k}{v.start}-{v.stop}" for k, v in region.items())


def write_by_regions(
    ds: xr.Dataset,
    path: str | Path,
    fingerprint: dict,
    *,
    encoding: dict | None = None,
    batch: int | None = 4,
    group_by: Callable[[dict], Hashable] | None = None,
    on_region: Callable[[int, int], None] | None = None,
    stop_after: int | None = None,
    dims: tuple[str, ...] = ("time", "y", "x"),
    after_write: Callable[[dict], None] | None = None,
) -> str:
    """Write lazy ``ds`` to ``path`` region by region; returns ``"reused"``, ``"written"``,
    ``"resumed"`` or (``stop_after``) ``"interrupted"``.

    A region is one chunk along ``dims`` (by default one date or period × one spatial tile): the
    unit of progress and of resumption. ``batch`` regions are computed together, which bounds
    memory whatever the area. ``group_by`` instead computes one graph per group of regions it
    gives the same key, in the keys' order, each region marked done by a task as soon as it is
    written: regions that share inputs (block reads with margins) read them once and no batch
    waits for its slowest region (a streamed run's panels: the scheduler then holds one panel's
    tasks, not the area's; what bounds memory must be in the graph, as the streamed reads'
    back-pressure is). ``batch=None`` without ``group_by`` is one graph for every region.
    ``on_region(done, total)`` reports progress; ``after_write(region)`` runs as a task (on any
    worker) once the region is in the store, and the region is marked done only after it (the
    COGs' tiles are compressed there, from what the store holds); ``stop_after`` (tests) stops
    after that many regions as if the run were killed.
    """
    path = Path(path)
    dims = tuple(d for d in dims if d in ds.dims)
    state = _usable_state(ds, path, fingerprint, dims, on_region)
    if state == "complete":
        return "reused"
    ds = _with_small_variables_loaded(ds)
    if state != "partial":
        _create_store(ds, path, fingerprint, encoding)
    prog = _progress_dir(path)
    prog.mkdir(parents=True, exist_ok=True)
    done = {p.name for p in prog.iterdir() if _intact(p)}  # a done region's chunks deleted or changed: redone
    regions = spatial_regions(ds, dims)
    todo = [r for r in regions if _region_name(r) not in done]
    count = len(regions) - len(todo)
    if on_region:
        on_region(count, len(regions))
    interrupted = stop_after is not None and count + len(todo) > stop_after
    if interrupted:
        todo = todo[: max(0, stop_after - count)]
    writable = ds.drop_vars([v for v in ds.variables if not {"y", "x"} & set(ds[v].dims)])
    writable.attrs = {}
    if batch is None or group_by is not None:
        groups: dict = {}
        for r in todo:
            groups.setdefault(group_by(r) if group_by else 0, []).append(r)
        for _, group in sorted(groups.items()):
            _write_all(writable, path, group, prog, count, len(regions), on_region, after_write)
            count += len(group)
    else:
        for chunk in _batches(todo, batch):
            _write_batch(writable, path, chunk, prog, after_write)
            count += len(chunk)
            if on_region:
                on_region(count, len(regions))
    if interrupted:
        return "interrupted"
    _seal(path, prog)
    return "resumed" if state == "partial" else "written"


def _usable_state(ds: xr.Dataset, path: Path, fingerprint: dict, dims: tuple[str, ...], on_region) -> str:
    """The store's state for this request (``complete``, ``partial``, ``absent``); a store of
    another request, or not cloudfree's, is refused."""
    state = store_state(path, fingerprint)
    if state == "complete":
        require_unchanged(path)
        if on_region:
            n = len(spatial_regions(ds, dims))
            on_region(n, n)
    elif state == "partial" and "x" in ds.chunks and stored_chunk(path) not in (None, ds.chunks["x"][0]):
        raise StoreError(f"{path} is being written in blocks of {stored_chunk(path)} px, this call asks for "
                         f"{ds.chunks['x'][0]}: resume with chunk={stored_chunk(path)}")
    elif state == "mismatch":
        raise StoreError(f"{path} was written for a different request; delete it or choose another output path")
    elif state == "foreign":
        raise StoreError(f"{path} exists but is not a cloudfree store; delete it or choose another output path")
    return state


def _with_small_variables_loaded(ds: xr.Dataset) -> xr.Dataset:
    """Small non-spatial variables (period labels, dates) loaded: they are written with the
    metadata, since region writes only carry spatial variables (a lazy one would never arrive)."""
    ds = ds.copy(deep=False)  # never mutate the caller's attrs
    return ds.assign_coords({k: ds[k].load() for k in ds.coords if not {"y", "x"} & set(ds[k].dims)})


def _create_store(ds: xr.Dataset, path: Path, fingerprint: dict, encoding: dict | None) -> None:
    """The store's metadata, written under a temporary name and renamed: a run killed while
    creating it leaves no half-made store (neither resumable nor recognisably ours)."""
    prog = _progress_dir(path)
    if prog.exists():
        shutil.rmtree(prog)
    ds = ds.copy(deep=False)
    ds.attrs = {**ds.attrs, FINGERPRINT: json.loads(json.dumps(fingerprint)), COMPLETE: False}
    init = path.with_name(path.name + ".init")
    shutil.rmtree(init, ignore_errors=True)
    _without_graphs(ds).to_zarr(init, mode="w", compute=False, zarr_format=3, consolidated=True,
                                encoding=encoding or {})
    init.replace(path)


def _write_batch(writable: xr.Dataset, path: Path, regions: list[dict], prog: Path, after_write) -> None:
    """Compute and write ``regions`` together, then mark each done."""
    dask.compute(*[writable.isel(r).to_zarr(path, region=r, compute=False, zarr_format=3) for r in regions])
    if after_write:
        dask.compute(*[dask.delayed(after_write, pure=False)(r) for r in regions])
    for r in regions:
        _mark_done(None, marker=str(prog / _region_name(r)), store=str(path), region=r)


def _region_chunks(path: Path, region: dict) -> list[Path]:
    """The chunk files that ``region`` writes, in every array of the store with spatial dims."""
    out = []
    for arr in sorted(p for p in path.iterdir() if (p / "zarr.json").is_file()):
        meta = json.loads((arr / "zarr.json").read_text())
        dims = meta.get("dimension_names") or []
        if meta.get("node_type") != "array" or not {"y", "x"} & set(dims):
            continue
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        ranges = [range(region[d].start // c, -(-region[d].stop // c)) if d in region else range(-(-n // c))
                  for d, c, n in zip(dims, chunks, meta["shape"])]
        out += [arr / sep.join(["c", *map(str, idx)]) for idx in itertools.product(*ranges)]
    return out


def _stamp(f: Path):
    """``[size, mtime in ns]`` of a chunk file, ``None`` where it is absent (a chunk of fill values
    only). A stat, not a read: marking a region done costs no pass over its bytes (a finished
    store's manifest holds their CRC32); a chunk deleted, rewritten or edited after it was marked
    no longer matches."""
    try:
        st = f.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _intact(marker: Path) -> bool:
    """A region's done marker still matches its chunk files (size and CRC32, or still absent)."""
    try:
        stamps = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stamps, dict) or not stamps:
        return False
    return all(_stamp(Path(f)) == want for f, want in stamps.items())


def _seal(path: Path, prog: Path) -> None:
    """Mark the store complete: its manifest, the flag, consolidated metadata; progress removed."""
    group = zarr.open_group(str(path), mode="r+")
    write_manifest(path)
    group.attrs[COMPLETE] = True
    zarr.consolidate_metadata(str(path))
    shutil.rmtree(prog, ignore_errors=True)


def _write_region(blocks: list, *, path: str, region: dict, variables: dict) -> None:
    """One region's computed blocks into the store, through xarray (its encoding, as the store has it)."""
    try:
        xr.Dataset({v: xr.Variable(dims, b, attrs, encoding=enc) for (v, (dims, attrs, enc)), b in
                    zip(variables.items(), blocks)}).to_zarr(path, region=region, zarr_format=3)
    finally:
        release_heap()  # compression buffers of many sizes: see cloudfree.heap


def _without_graphs(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with each lazy variable's graph swapped for zeros of its shape, chunks and dtype
    (attributes and encoding kept): creating the store writes metadata only, and its unused write
    graph would otherwise take in every task of the area at once (a streamed run's graph is made
    panel by panel only when it is culled)."""
    import dask.array as da

    out = ds.copy(deep=False)
    for name, v in ds.data_vars.items():
        if isinstance(v.data, da.Array):
            out[name] = v.copy(data=da.zeros(v.shape, chunks=v.data.chunks, dtype=v.dtype))
    return out


def _then(fn: Callable[[dict], None], _written, *, region: dict) -> None:
    try:
        fn(region)
    finally:
        release_heap()


def _mark_done(_written, *, marker: str, store: str, region: dict) -> str:
    """Mark a region done, with the size and modification time of each chunk file it wrote: a
    resume trusts a done region only while they still match (see :func:`_intact`)."""
    stamps = {str(f): _stamp(f) for f in _region_chunks(Path(store), region)}
    tmp = Path(marker + ".tmp")
    tmp.write_text(json.dumps(stamps or {"none": None}))
    tmp.replace(marker)
    return marker


def _write_all(ds: xr.Dataset, path: Path, todo: list, prog: Path, done: int, total: int, on_region,
               after_write) -> None:
    """Every region of ``todo`` in one graph: a task per region writes its blocks, then
    ``after_write``, then its marker. Written out task by task on top of the variables' graph,
    once: ``to_zarr(compute=False)`` per region culled the whole graph each time (minutes for a
    hundred regions of a streamed run, whose every block depends on earlier ones)."""
    from functools import partial

    import numpy as np
    from dask.callbacks import Callback
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    names = [v for v in ds.data_vars]
    variables = {v: (ds[v].dims, dict(ds[v].attrs), dict(ds[v].encoding)) for v in names}
    starts = {d: np.cumsum((0,) + tuple(c)) for d, c in ds.chunks.items()}
    split = [d for d in ds.dims if d not in todo[0] and len(ds.chunks.get(d, ())) > 1]
    if split:
        raise InputError(f"regions must hold whole chunks along {split}")
    graph = HighLevelGraph.merge(*[ds[v].data.__dask_graph__() for v in names])
    layers, deps = dict(graph.layers), dict(graph.dependencies)
    keys = {}
    for r in todo:
        blocks, needs = [], set()
        for v in names:
            a = ds[v].data
            idx = tuple(int(np.searchsorted(starts[d], r[d].start)) if d in r else 0 for d in ds[v].dims)
            blocks.append((a.name, *idx))
            needs.update(a.__dask_layers__())
        name = _region_name(r)
        wkey = f"cloudfree-region-write-{name}-{path.name}"
        layers[wkey] = MaterializedLayer({wkey: (partial(_write_region, path=str(path), region=r, variables=variables),
                                                 blocks)})
        deps[wkey] = needs
        if after_write:
            akey = f"cloudfree-region-after-{name}-{path.name}"
            layers[akey] = MaterializedLayer({akey: (partial(_then, after_write, region=r), wkey)})
            deps[akey] = {wkey}
            wkey = akey
        mkey = f"cloudfree-region-done-{name}-{path.name}"
        layers[mkey] = MaterializedLayer({mkey: (partial(_mark_done, marker=str(prog / name), store=str(path), region=r),
                                                 wkey)})
        deps[mkey] = {wkey}
        keys[mkey] = r
    final = f"cloudfree-regions-{path.name}-{len(todo)}-{done}"
    layers[final] = MaterializedLayer({final: (len, list(keys))})
    deps[final] = set(keys)
    heard: list = []

    class _Progress(Callback):  # the local schedulers call this in the calling thread
        def _posttask(self, key, result, dsk, state_, worker_id):
            if key in keys:
                heard.append(key)
                if on_region:
                    on_region(done + len(heard), total)

    with _Progress():
        dask.compute(Delayed(final, _culled(HighLevelGraph(layers, deps), {final})))
    if on_region and len(heard) < len(keys):  # a distributed client runs no local callbacks
        on_region(done + len(todo), total)


def _culled(graph, keys: set):
    """The layers and tasks that ``keys`` need, each layer culled to its needed keys.
    ``HighLevelGraph.cull`` (dask 2026.8) keeps any layer of one task while one key is wanted
    (it compares the number of wanted keys with the layer's size): the graph of one streamed
    panel, a layer per task, kept every other panel's tasks."""
    from dask.highlevelgraph import HighLevelGraph

    want = set(keys)
    ext = graph.get_all_external_keys()
    layers = {}
    for name in reversed(graph._toposort_layers()):
        layer = graph.layers[name]
        mine = want.intersection(layer.get_output_keys())
        if not mine:
            continue
        layers[name], needs = layer.cull(mine, ext)
        for k, d in needs.items():
            want |= d
        want -= set(needs)
    return HighLevelGraph(layers, {n: graph.dependencies[n] & layers.keys() for n in layers})


def _batches(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
