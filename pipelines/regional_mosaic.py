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

from cloudfree.cluster import ClusterConfig, start_cluster
from cloudfree.job import JobRequest
from cloudfree.pipeline import run_request
from cloudfree.progress import StageProgress, console


def load_config(path: str | Path) -> dict:
    text = Path(path).read_text()
    return tomllib.loads(text) if str(path).endswith(".toml") else yaml.safe_load(text)


def request(c: dict) -> JobRequest:
    """The config's job as a :class:`~cloudfree.job.JobRequest`, parsed and checked as ``cloudfree run``'s options."""
    cube, tiles = dict(c.get("cube", {})), dict(c.get("tiles", {}))
    return JobRequest.from_options(
        c["stac"], c["start"], c["end"], c["out"], bbox=c.get("bbox"), aoi=c.get("aoi"), bands=cube.get("bands"),
        exclude_scl=cube.get("exclude_scl"), collection=c.get("collection"), max_cloud_cover=c.get("max_cloud"),
        crs=cube.get("crs"), resolution=cube.get("resolution"), chunk=cube.get("chunk"), method=c.get("method", "auto"),
        model=c.get("model"), period=c.get("period"), context_days=c.get("context_days", 30),
        max_dates=c.get("max_dates", 12), device=tiles.get("device", "auto"), patch=tiles.get("patch", 256),
        overlap=tiles.get("overlap", 16), batch=tiles.get("batch"), stream=c.get("stream", True))


def main(path: str) -> dict:
    c = load_config(path)
    req = request(c)
    cl = dict(c.get("cluster", {}))
    kind = cl.pop("kind", "local")
    if kind == "local":
        cluster = ClusterConfig(**cl)
    else:  # a cluster started here through its own library; the run joins it
        started = start_cluster(kind, cl.get("options"), cl.get("workers", 1), cl.get("address"))
        console.print(f"{kind} cluster: {started.dashboard_link}")
        cluster = ClusterConfig(scheduler=started.scheduler_address)
    manifest = run_request(req, cluster, progress=StageProgress(), echo=console.print)
    console.print(f"outputs: {Path(c['out']) / 'run.json'}")
    return manifest


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pipelines/configs/demo.yaml")
