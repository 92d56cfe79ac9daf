"""Start or join a Dask cluster, print the dashboard link; the one place Dask is configured."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from distributed import Client, LocalCluster

__all__ = ["ClusterConfig", "dask_client"]


@dataclass(frozen=True)
class ClusterConfig:
    """Where to compute. ``scheduler`` joins an existing cluster; otherwise a LocalCluster starts."""

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str = "auto"
    processes: bool = False
    """Threads share one process (the model and GDAL caches are loaded once); set True for big CPU runs."""
    dashboard_address: str = "127.0.0.1:0"


@contextlib.contextmanager
def dask_client(config: ClusterConfig = ClusterConfig(), echo=print) -> Iterator[Client]:
    """Yield a connected client; the dashboard link is printed so users can watch progress."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed sets INFO on import; quiet it
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if config.scheduler:
        client = Client(config.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=config.n_workers or (2 if config.processes else 1),
                               threads_per_worker=config.threads_per_worker, memory_limit=config.memory_limit,
                               processes=config.processes, dashboard_address=config.dashboard_address)
        client = Client(cluster)
    try:
        import odc.stac

        odc.stac.configure_rio(cloud_defaults=True, client=client,
                               GDAL_HTTP_MAX_RETRY="5", GDAL_HTTP_RETRY_DELAY="1")
    except Exception:  # configure_rio is best effort on exotic clusters
        pass
    echo(f"Dask dashboard: {client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
