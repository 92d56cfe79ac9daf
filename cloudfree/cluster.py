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


def dashboard_link(client: Client, config: ClusterConfig) -> str:
    """A link that opens on the machine that runs the job: the local cluster's dashboard listens on
    ``config.dashboard_address`` (127.0.0.1 by default), whatever address distributed reports."""
    link = client.dashboard_link
    if config.scheduler is None:
        from urllib.parse import urlparse

        u = urlparse(link)
        host = config.dashboard_address.rsplit(":", 1)[0] or "127.0.0.1"
        host = "127.0.0.1" if host in ("", "0.0.0.0", "localhost") else host
        link = u._replace(netloc=f"{host}:{u.port}").geturl()
        if host == "127.0.0.1":
            link += "  (local only; --dashboard-address 0.0.0.0:8787 to reach it from elsewhere)"
    return link


@contextlib.contextmanager
def dask_client(config: ClusterConfig = ClusterConfig(), echo=print) -> Iterator[Client]:
    """Yield a connected client; the dashboard link is printed so users can watch progress."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed sets INFO on import; quiet it
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # bokeh warns about distributed's own host wildcard: nothing a user can act on
    logging.getLogger("bokeh.server.util").setLevel(logging.ERROR)
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
    echo(f"Dask dashboard: {dashboard_link(client, config)}")
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
