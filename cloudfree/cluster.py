"""Start or join a Dask cluster, print the dashboard link; the one place Dask is configured."""

from __future__ import annotations

from .tuning import (BASE_BYTES, BYTES_PER_PIXEL_VALUE, CHUNKS, GPU_BLOCKS_AT_ONCE, MAX_READ_AHEAD, PATCH_BYTES,
                     PINNED_BUFFERS, READ_BYTES_PER_VALUE, STRIPE)

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING


from .errors import InputError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClusterConfig", "cluster_config", "fit_to_plan", "dask_client", "parse_gpus", "gpu_worker_specs", "start_cluster", "CLUSTER_KINDS", "MemoryPlan", "plan_memory", "stream_bytes", "machine_memory", "parse_memory"]



def parse_memory(text: str | int | None) -> int | None:
    """``"4GB"``, ``"2 GiB"``, ``"500MB"`` or bytes → bytes; ``None``/``"auto"`` → None."""
    if text is None or text == "auto":
        return None
    from dask.utils import parse_bytes

    try:
        n = int(text) if isinstance(text, int) else parse_bytes(str(text))
    except (ValueError, TypeError):
        raise InputError(f"--memory-limit {text!r} is not a size; use e.g. 4GB, 2GiB or 500MB") from None
    if n < BASE_BYTES + 64 * 2**20:
        raise InputError(f"--memory-limit {text} is too small; cloudfree needs about {BASE_BYTES >> 20} MB "
                         "before the first block")
    return n


def machine_memory() -> int:
    """The memory this process may use: the machine's, or the container's cgroup limit if lower."""
    import psutil

    total = psutil.virtual_memory().total
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            v = open(f).read().strip()
            if v.isdigit():
                total = min(total, int(v))
        except OSError:
            pass
    return total


@dataclass(frozen=True)
class MemoryPlan:
    """Block size and concurrency that keep one run under ``limit`` bytes whatever the AOI size:
    the AOI only changes how many blocks there are, never how many are in memory at once."""

    limit: int
    chunk: int
    """Spatial block in pixels (cube chunks and inference tiles)."""
    in_flight: int
    """Output blocks (period × tile) computed at once."""
    estimate: int
    """Estimated peak bytes."""
    batch: int = 16
    """Patches per forward pass of a spatial model (U-Net, TerraMind), from what the blocks leave."""

    def describe(self) -> str:
        return (f"memory budget {self.limit / 2**30:.1f} GiB: blocks of {self.chunk} px, {self.in_flight} at once "
                f"(at most {self.estimate / 2**30:.1f} GiB for any area; --memory-limit to change)")

    def peak_for(self, ny: int, nx: int) -> int:
        """Estimated peak bytes for an output grid of ``ny`` x ``nx`` px: blocks no larger than
        the area, no more of them at once than it has (what the plan's estimate assumes at most)."""
        per_block = min(ny, self.chunk) * min(nx, self.chunk) / self.chunk**2
        blocks = -(-ny // self.chunk) * -(-nx // self.chunk)
        share = per_block * min(blocks, self.in_flight) / self.in_flight
        return int(BASE_BYTES + (self.estimate - BASE_BYTES) * share)


def block_bytes(chunk: int, n_dates: int, n_bands: int) -> int:
    """Bytes one block holds in flight (dates × bands × pixels × the measured factor)."""
    return BYTES_PER_PIXEL_VALUE * n_dates * (n_bands + 1) * chunk * chunk


def stream_bytes(chunk: int, n_dates: int, n_bands: int, in_flight: int, gpu: bool = False) -> int:
    """Bytes a streamed run holds beside its model blocks' work, whatever the area: the reads of a
    stripe's row of blocks, the block's own row neighbours and the read-ahead, every date each (see
    :func:`cloudfree.reconstruct.model_reads.model_from_reads`); on a GPU the model's blocks are staged
    in at most :data:`~cloudfree.tuning.PINNED_BUFFERS` host buffers of the stored values."""

    one = READ_BYTES_PER_VALUE * n_dates * (n_bands + 1) * chunk * chunk
    return one * (STRIPE + 2 + min(in_flight, MAX_READ_AHEAD) + (PINNED_BUFFERS if gpu else 0))


def plan_memory(limit: int | None = None, *, threads: int = 1, n_bands: int = 12, n_dates: int = 12,
                chunk: int | None = None, streamed: bool = False, gpu: bool = False) -> MemoryPlan:
    """Choose the block size (unless ``chunk`` is given) and how many blocks run at once so that
    ``BASE_BYTES + in_flight × block_bytes`` stays under ``limit`` (default: 80 % of the machine).
    ``streamed``: the reads of :func:`stream_bytes` count too, and with ``gpu`` the blocks' work is on
    the device (measured on 2 cores: the reads in flight, not the model's blocks, made a run's
    memory grow with the area). A ``chunk`` given by the user that cannot fit is an error before any
    work, not a crash later."""
    limit = limit or int(0.8 * machine_memory())
    avail = limit - BASE_BYTES
    if avail <= 0:
        raise InputError(f"a memory budget of {limit >> 20} MB leaves nothing for data; cloudfree needs about "
                         f"{BASE_BYTES >> 20} MB before the first block")
    in_flight = max(1, threads)
    candidates = [chunk] if chunk else [c for c in CHUNKS if c >= 256]

    def needs(k: int, c: int) -> int:
        blocks = 0 if streamed and gpu else k * block_bytes(c, n_dates, n_bands)
        return blocks + (stream_bytes(c, n_dates, n_bands, k, gpu) if streamed else 0)

    for k in range(in_flight, 0, -1):  # every core busy on blocks of 256 px or more, else fewer at once
        for c in candidates:
            need = needs(k, c)
            if need <= avail:
                batch = int(max(1, min(16, (avail - need) // (k * PATCH_BYTES))))
                return MemoryPlan(limit, c, k, BASE_BYTES + need, batch)
    if chunk:
        fits = next((c for c in CHUNKS if needs(1, c) <= avail), CHUNKS[-1])
        raise InputError(f"--chunk {chunk} needs about {needs(1, chunk) >> 20} MB for "
                         f"{n_dates} dates x {n_bands} bands; the memory budget ({limit >> 20} MB) allows --chunk {fits} "
                         "(or raise --memory-limit, or lower --max-dates)")
    c = CHUNKS[-1]
    return MemoryPlan(limit, c, 1, BASE_BYTES + needs(1, c), 1)


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
    gpus: tuple[str, ...] = ()
    """Local GPU ids: one worker process per GPU, pinned with ``CUDA_VISIBLE_DEVICES``, carrying the
    resource ``GPU=1``; with ``n_workers`` that many CPU decode workers beside them (no GPU). The
    machine's cores are split among all of them."""


def cluster_config(scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
                   processes: bool = False, dashboard_address: str = "127.0.0.1:0", gpus: str | None = None) -> ClusterConfig:
    """A :class:`ClusterConfig` from the command line's options (``--gpus`` parsed and checked)."""
    ids = parse_gpus(gpus)
    if ids and scheduler:
        raise InputError("give --gpus (a local cluster, one worker per GPU) or --scheduler (an existing cluster), not both")
    return ClusterConfig(scheduler=scheduler, n_workers=workers, threads_per_worker=threads, processes=processes,
                         dashboard_address=dashboard_address, gpus=ids)


def fit_to_plan(cluster: ClusterConfig, plan_for) -> tuple[MemoryPlan, ClusterConfig]:
    """The memory plan ``plan_for(threads per worker)`` for the cluster's workers, and the cluster
    with its workers' memory limit set from it (a joined cluster keeps its own)."""
    import os
    from dataclasses import replace

    cores = os.cpu_count() or 1
    threads = cluster.threads_per_worker or (cores // max(1, len(cluster.gpus)) if cluster.gpus else cores)
    plan = plan_for(threads)
    if cluster.scheduler is None:
        per_worker = plan.limit // (len(cluster.gpus) or cluster.n_workers or (2 if cluster.processes else 1))
        cluster = replace(cluster, memory_limit=str(per_worker))
    return plan, cluster


def parse_gpus(text: str | None) -> tuple[str, ...]:
    """``--gpus all`` / ``N`` / ``0,2`` → local GPU ids; an error where this machine has fewer GPUs."""
    if not text:
        return ()
    from .extras import require_torch

    require_torch(f"--gpus {text}")
    import torch

    n = torch.cuda.device_count()
    if text == "all":
        ids = tuple(str(i) for i in range(n))
    elif text.isdigit():
        ids = tuple(str(i) for i in range(int(text)))
    else:
        ids = tuple(t.strip() for t in text.split(",") if t.strip())
        if not all(t.isdigit() for t in ids):
            raise InputError(f"--gpus {text!r}: give all, a count, or GPU ids like 0,1")
    if not ids or any(int(i) >= n for i in ids):
        raise InputError(f"--gpus {text}: this machine has {n} CUDA GPU(s); for GPUs elsewhere join their cluster "
                         "with --scheduler")
    return ids


def gpu_worker_specs(gpus: tuple[str, ...], *, threads: int | None = None, memory_limit: str | int = "auto",
                     cpu_workers: int = 0) -> dict:
    """SpecCluster worker specs: one Nanny per GPU with that GPU alone visible and ``GPU=1``, plus
    ``cpu_workers`` decode workers that see no GPU and carry no GPU resource (reads, masks, writes;
    the model's tasks ask for the resource, see :func:`gpu_task_resources`)."""
    import os

    from distributed import Nanny

    per = threads or max(1, (os.cpu_count() or 1) // max(1, len(gpus) + cpu_workers))
    specs = {f"gpu-{g}": {"cls": Nanny, "options": {"nthreads": per, "resources": {"GPU": 1},
                                                    "memory_limit": memory_limit, "env": {"CUDA_VISIBLE_DEVICES": g}}}
             for g in gpus}
    specs.update({f"cpu-{i}": {"cls": Nanny, "options": {"nthreads": per, "memory_limit": memory_limit,
                                                         "env": {"CUDA_VISIBLE_DEVICES": ""}}}
                  for i in range(cpu_workers)})
    return specs


def model_task_config() -> dict:
    """Dask settings for a run: with GPU resources on the cluster, no low-level task fusion, which
    would merge a model task into an unannotated neighbour and send it to a decode worker."""
    return {"optimization.fuse.active": False} if gpu_task_resources() else {}


def run_on_model_processes(fn, *args):
    """``fn(*args)`` in every process that runs model tasks, before they start: here when there is
    no cluster or its workers are this process's threads, else once on each worker (``client.run``;
    a worker without a GPU returns at once). Results by worker address (``"local"`` here)."""
    import os

    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return {"local": fn(*args)}
    if all(pid == os.getpid() for pid in client.run(os.getpid).values()):
        return {"local": fn(*args)}
    return client.run(fn, *args)


def gpu_task_resources() -> dict | None:
    """``{"GPU": share}`` for the model's tasks when the active Dask cluster has workers carrying a
    ``GPU`` resource (``--gpus``, or GPU partitions started with ``--resources GPU=1``): those tasks
    then run only there, :data:`~cloudfree.tuning.GPU_BLOCKS_AT_ONCE` at a time per GPU,
    while reads and writes may run on any worker. ``None`` otherwise (threads, or a cluster without
    the resource, where an annotated task would never start)."""
    try:
        from distributed import default_client

        workers = default_client().scheduler_info()["workers"].values()
    except (ImportError, ValueError):
        return None
    if not any((w.get("resources") or {}).get("GPU") for w in workers):
        return None

    return {"GPU": 1 / GPU_BLOCKS_AT_ONCE}


CLUSTER_KINDS = ("local", "slurm", "kubernetes", "gateway")


def start_cluster(kind: str, options: dict | None = None, workers: int = 1, address: str | None = None):
    """A cluster on the engines users run (``pip install 'cloudfree[hpc]'``): ``slurm``
    (dask-jobqueue's SLURMCluster), ``kubernetes`` (dask-kubernetes' operator, spec from
    ``make_cluster_spec``) or ``gateway`` (Dask Gateway). Returns the cluster; ``cluster.get_client()``
    connects to it. Worker resources ``GPU=1`` and GDAL settings come from ``options``."""
    options = dict(options or {})
    if kind not in CLUSTER_KINDS[1:]:
        raise InputError(f"cluster kind {kind!r}: choose one of {', '.join(CLUSTER_KINDS[1:])}")
    try:
        if kind == "slurm":
            from dask_jobqueue import SLURMCluster

            cluster = SLURMCluster(**options)
        elif kind == "kubernetes":
            from dask_kubernetes.operator import KubeCluster, make_cluster_spec

            cluster = KubeCluster(custom_cluster_spec=make_cluster_spec(**options))
        else:
            from dask_gateway import Gateway

            cluster = Gateway(address=address).new_cluster(**options)
    except ImportError as exc:
        raise ImportError(f"the {kind} cluster needs {exc.name}: pip install 'cloudfree[hpc]'") from None
    cluster.scale(workers)
    return cluster


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


def _report_lost_workers(client: Client, started: set[str], echo) -> None:
    """Say when workers died during the run: Dask re-ran their tasks elsewhere (the outputs were
    still checked), but a user should know their cluster lost processes (memory, preemption)."""
    try:
        lost = started - set(client.scheduler_info()["workers"])
    except Exception:
        return
    if lost:
        echo(f"warning: {len(lost)} Dask worker(s) left during the run ({', '.join(sorted(lost))}); their tasks were "
             "re-run on other workers and the outputs checked. Frequent losses mean too little memory per worker "
             "(--memory-limit) or a preempted cluster")


GDAL_READ_LIMITS = {"GDAL_HTTP_CONNECTTIMEOUT": "10", "GDAL_HTTP_TIMEOUT": "60"}
"""Seconds GDAL waits to connect to an asset server and for each HTTP answer (set in the
environment to change them): an asset server that stops answering mid-run ends in a named read
error after GDAL's retries instead of a run that never ends."""


@contextlib.contextmanager
def dask_client(config: ClusterConfig = ClusterConfig(), echo=print) -> Iterator[Client]:
    """Yield a connected client; the dashboard link is printed so users can watch progress."""
    import os

    from distributed import Client, LocalCluster  # here: a request is checked before distributed loads

    for key, value in GDAL_READ_LIMITS.items():  # before workers start: they inherit the environment
        os.environ.setdefault(key, value)

    if logging.getLogger().getEffectiveLevel() > logging.INFO:  # distributed sets INFO on import; quiet it
        for name in ("distributed", "bokeh", "tornado"):
            logging.getLogger(name).setLevel(logging.WARNING)
    # bokeh warns about distributed's own host wildcard: nothing a user can act on
    logging.getLogger("bokeh.server.util").setLevel(logging.ERROR)
    # The memory plan bounds what the blocks hold; Dask's own monitor measures the whole process
    # (torch, GDAL caches) and would pause a thread worker for good: never pause a local thread worker.
    logging.getLogger("distributed.worker.memory").setLevel(logging.ERROR)
    if config.scheduler:
        # an address (tcp://host:8786) or a scheduler file (dask scheduler --scheduler-file, dask-jobqueue, dask-mpi)
        if config.scheduler.endswith(".json"):
            import pathlib

            if not pathlib.Path(config.scheduler).exists():
                raise FileNotFoundError(f"scheduler file {config.scheduler} does not exist (is the scheduler up?)")
            client = Client(scheduler_file=config.scheduler, timeout="30s")
        else:
            client = Client(config.scheduler, timeout="30s")
        cluster = None
    else:
        import dask

        quiet = {"distributed.worker.memory.pause": False} if not (config.processes or config.gpus) else {}
        with dask.config.set(quiet):
            if config.gpus:
                from distributed import Scheduler, SpecCluster

                cluster = SpecCluster(
                    workers=gpu_worker_specs(config.gpus, threads=config.threads_per_worker,
                                             memory_limit=config.memory_limit, cpu_workers=config.n_workers or 0),
                    scheduler={"cls": Scheduler, "options": {"dashboard_address": config.dashboard_address}})
            else:
                cluster = LocalCluster(n_workers=config.n_workers or (2 if config.processes else 1),
                                       threads_per_worker=config.threads_per_worker, memory_limit=config.memory_limit,
                                       processes=config.processes, dashboard_address=config.dashboard_address)
        client = Client(cluster)
    try:
        import odc.stac

        odc.stac.configure_rio(cloud_defaults=True, client=client, GDAL_HTTP_MAX_RETRY="5", GDAL_HTTP_RETRY_DELAY="1",
                               **{k: os.environ[k] for k in GDAL_READ_LIMITS})
    except Exception:  # configure_rio is best effort on exotic clusters
        pass
    echo(f"Dask dashboard: {dashboard_link(client, config)}")
    try:
        started = set(client.scheduler_info()["workers"])
    except Exception:
        started = set()
    try:
        yield client
        _report_lost_workers(client, started, echo)
    except KeyboardInterrupt:  # Ctrl-C: cancelled futures are expected, not news; the CLI says one line
        for name in ("asyncio", "distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
