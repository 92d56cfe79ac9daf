"""Regional cloud-free mosaic from a YAML/TOML config: the scripted form of ``cloudfree run``.

    python pipelines/regional_mosaic.py pipelines/configs/demo.yaml
    python pipelines/regional_mosaic.py pipelines/configs/cluster-slurm.yaml     # also -kubernetes, -gateway

``cluster.kind`` (local, slurm, kubernetes, gateway) says where it computes; see
:func:`cloudfree.cluster.start_cluster`.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import yaml

from cloudfree.aoi import parse_aoi, parse_bbox
from cloudfree.catalog.search import SearchRequest
from cloudfree.catalog.sources import open_catalog, source_id
from cloudfree.cluster import ClusterConfig, dask_client, start_cluster
from cloudfree.cube.load import CubeSpec, MaskConfig
from cloudfree.pipeline import JobConfig, run_job
from cloudfree.progress import StageProgress, console
from cloudfree.reconstruct.tiles import TileConfig, check_device, resolve_device


def load_config(path: str | Path) -> dict:
    text = Path(path).read_text()
    return tomllib.loads(text) if str(path).endswith(".toml") else yaml.safe_load(text)


def main(path: str) -> dict:
    c = load_config(path)
    aoi = parse_bbox(c["bbox"]) if "bbox" in c else parse_aoi(c["aoi"])
    req = SearchRequest(aoi, str(c["start"]), str(c["end"]), c.get("collection"), c.get("max_cloud"))
    cube = dict(c.get("cube", {}))
    if "exclude_scl" in cube:
        cube["mask"] = MaskConfig.from_classes(cube.pop("exclude_scl"))
    spec = CubeSpec(**{"chunk": 1024, **cube})
    cl = dict(c.get("cluster", {}))
    kind = cl.pop("kind", "local")
    tiles = dict(c.get("tiles", {}))
    device = tiles.get("device", "auto")
    if kind == "local" and not cl.get("scheduler"):
        tiles["device"] = resolve_device(device)
    else:
        check_device(device)  # resolved on each worker
    job = JobConfig(method=c.get("method", "auto"), model=c.get("model"), period_step=c.get("period"),
                    context_days=c.get("context_days", 30), max_dates=c.get("max_dates", 12), tiles=TileConfig(**tiles))
    stac = c["stac"]
    if kind == "local":
        context = dask_client(ClusterConfig(**cl), echo=console.print)
    else:
        cluster = start_cluster(kind, cl.get("options"), cl.get("workers", 1), cl.get("address"))
        console.print(f"{kind} cluster: {cluster.dashboard_link}")
        context = cluster.get_client()
    with open_catalog(stac) as url, context, StageProgress() as progress:
        manifest = run_job(url, req, spec, c["out"], job, progress=progress, echo=console.print, source=source_id(stac))
    console.print(f"outputs: {Path(c['out']) / 'run.json'}")
    return manifest


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pipelines/configs/demo.yaml")
