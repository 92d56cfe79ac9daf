"""Write a large, deterministic SYNTHETIC Sentinel-2 L2A catalog fast (COGs + items.json).

Why not the demo simulator at full size: it took 16 min for 2100² on 2 cores. Here one small scene
(``--base`` px, all dates) is simulated once and mirror-tiled to the requested size, so land
cover, phenology, clouds and SCL keep their statistics while the cost is only the COG writing,
spread over all cores (one process per date × band). A full 10980² tile, 12 dates, is one
``python benchmarks/make_catalog.py --size 10980`` on a 16-core host.

Prints one JSON line: the items file, size, dates, bytes written and seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

_SCENE = {}


def _mirror_index(n: int, s: int) -> np.ndarray:
    """0..s-1, s-1..0, 0..s-1, … of length n: tiles meet at mirrored, seamless edges."""
    i = np.arange(n)
    k, r = np.divmod(i, s)
    return np.where(k % 2 == 0, r, s - 1 - r)


def _init(scene_path: str) -> None:
    _SCENE.update(np.load(scene_path))


def _write_asset(args) -> tuple[str, int]:
    from affine import Affine

    from cloudfree.catalog.demo import _block_mean, _to_dn, _write_cog

    t, band_index, factor, (rows, size), origin, epsg, path = args
    base = _SCENE["scl"][t] if band_index < 0 else _SCENE["observed"][t, band_index]
    s = base.shape[0]
    arr = base[np.ix_(_mirror_index(rows, s), _mirror_index(size, s))]
    if band_index < 0:
        arr = arr[::factor, ::factor]
    else:
        arr = _to_dn(_block_mean(arr, factor) if factor > 1 else arr)
    x0, y0 = origin
    _write_cog(Path(path), np.ascontiguousarray(arr), Affine(10.0 * factor, 0, x0, 0, -10.0 * factor, y0), epsg, 0)
    return path, os.path.getsize(path)


def make_catalog(out: Path, size: int, n_dates: int, base: int = 600, seed: int = 11, workers: int | None = None,
                 rows: int | None = None, items_only: bool = False) -> dict:
    """``size`` px wide and ``rows`` (default: ``size``) px tall: a wide, short scene shows memory
    against the area's width (what a streamed run's memory depends on) at little cost.
    ``items_only``: the items without their COGs (what plans a run, never what reads one)."""
    import pystac

    from cloudfree.bands import S2_BANDS
    from cloudfree.catalog.demo import DemoSpec, _lonlat_footprint
    from cloudfree.catalog.simulate import simulate_scene

    rows = rows or size
    if size % 6 or rows % 6 or base % 6:
        raise SystemExit("--size, --rows and --base must be multiples of 6 (10/20/60 m grids align)")
    spec = DemoSpec(size=size, n_dates=n_dates, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "spec.json"
    key = json.dumps({"size": size, "n_dates": n_dates, "base": base, "seed": seed}
                     | ({"rows": rows} if rows != size else {}) | ({"items_only": True} if items_only else {}))
    if marker.exists() and marker.read_text() == key:
        return {"items": str(out / "items.json"), "reused": True}
    t0 = time.perf_counter()
    scene = simulate_scene(seed, base, n_dates, spec.start, spec.cadence_days, cloudiness=0.45)
    scene_path = out / "base_scene.npz"
    np.savez(scene_path, observed=scene.observed, scl=scene.scl)
    t_sim = time.perf_counter() - t0
    res_px = {10: 1, 20: 2, 60: 6}
    x0, y0 = spec.origin
    jobs, items = [], []
    for t, date in enumerate(scene.dates):
        day = str(date)
        item_id = f"SYNTH_S2_L2A_{spec.epsg}_{day.replace('-', '')}"
        folder = out / item_id
        folder.mkdir(exist_ok=True)
        geom, bbox = _lonlat_footprint((x0, y0 - rows * 10, x0 + size * 10, y0), spec.epsg)
        item = pystac.Item(item_id, geom, bbox, np.datetime64(day + "T10:00:00").astype("O"), {
            "platform": "sentinel-2a", "constellation": "sentinel-2", "proj:epsg": spec.epsg,
            "eo:cloud_cover": round(float(np.isin(scene.scl[t], (8, 9, 10)).mean() * 100), 3),
            "s2:processing_baseline": "05.10", "cloudfree:synthetic": True,
            "description": "SYNTHETIC Sentinel-2 L2A-like scene (mirror-tiled) made by benchmarks/make_catalog.py"},
            collection="sentinel-2-l2a")
        item.stac_extensions = ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"]
        for b in [*S2_BANDS, None]:
            f = 2 if b is None else res_px[b.resolution]
            name = "SCL" if b is None else b.id
            path = folder / f"{name}.tif"
            jobs.append((t, -1 if b is None else list(scene.bands).index(b.id), f, (rows, size), spec.origin, spec.epsg,
                         str(path)))
            rb = ({"nodata": 0, "data_type": "uint8", "spatial_resolution": 20} if b is None else
                  {"nodata": 0, "data_type": "uint16", "spatial_resolution": b.resolution, "scale": 0.0001, "offset": -0.1})
            extra = {"proj:shape": [rows // f, size // f], "proj:transform": [10.0 * f, 0, x0, 0, -10.0 * f, y0], "raster:bands": [rb]}
            if b is not None:
                extra["eo:bands"] = [{"name": b.id, "common_name": b.common_name}]
            item.add_asset(name, pystac.Asset(path.resolve().as_uri(), media_type=pystac.MediaType.COG,
                                              roles=["data"] + ([] if b is None else ["reflectance"]), extra_fields=extra))
        items.append(item)
    t1 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    written = 0
    if not items_only:
        with ProcessPoolExecutor(workers, initializer=_init, initargs=(str(scene_path),)) as pool:
            written = sum(n for _, n in pool.map(_write_asset, jobs, chunksize=1))
    (out / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": [i.to_dict() for i in items]}))
    scene_path.unlink()
    marker.write_text(key)
    return {"items": str(out / "items.json"), "reused": False, "size": size, "rows": rows, "dates": n_dates, "base": base,
            "assets": len(jobs), "bytes": written, "simulate_s": round(t_sim, 2),
            "write_s": round(time.perf_counter() - t1, 2), "workers": workers, "data": "SYNTHETIC"}


def write_aoi(out: Path, width: int, rows: int, inset_m: float = 5.0) -> Path:
    """``aoi_<width>.geojson`` in ``out``: the scene's first ``width`` columns, all ``rows`` rows, as
    a lon/lat polygon whose corners are the UTM rectangle's (inset a little, so the run's grid is
    the scene's pixels and not one column more)."""
    from cloudfree.catalog.demo import DemoSpec, _lonlat_footprint

    spec = DemoSpec()  # the origin and CRS make_catalog places every scene at
    x0, y0 = spec.origin
    geom, _ = _lonlat_footprint((x0 + inset_m, y0 - rows * 10 + inset_m, x0 + width * 10 - inset_m, y0 - inset_m),
                                spec.epsg)
    path = out / f"aoi_{width}.geojson"
    path.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": geom}))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/catalog"))
    ap.add_argument("--size", type=int, default=10980, help="10 m pixels per side (10980: a full Sentinel-2 tile)")
    ap.add_argument("--rows", type=int, default=None, help="10 m pixels tall (default: --size): a wide, short scene")
    ap.add_argument("--aoi-widths", default="", help="comma-separated widths in px: write aoi_<width>.geojson, the "
                    "scene's first <width> columns over all its rows (memory against the area's width)")
    ap.add_argument("--items-only", action="store_true", help="the items without their COGs (plans a run, reads nothing)")
    ap.add_argument("--dates", type=int, default=12)
    ap.add_argument("--base", type=int, default=600, help="side of the simulated scene that is mirror-tiled")
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = make_catalog(a.out, a.size, a.dates, a.base, workers=a.workers, rows=a.rows, items_only=a.items_only)
    for w in filter(None, a.aoi_widths.split(",")):
        res.setdefault("aois", []).append(str(write_aoi(a.out, int(w), a.rows or a.size)))
    from real_quality import _commit  # the commit, honouring CLOUDFREE_COMMIT on copies without .git

    print(json.dumps({"benchmark": "make_catalog", "machine": f"{os.cpu_count()} CPU cores", "date": time.strftime("%Y-%m-%d"),
                      "commit": _commit(), **res, "wall_s": round(time.perf_counter() - t0, 2)}))


if __name__ == "__main__":
    main()
