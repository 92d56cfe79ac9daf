"""One worker per GPU, and the device chosen on the workers: tested with real local worker processes
that carry ``GPU=1`` and a pinned ``CUDA_VISIBLE_DEVICES`` (CPU devices: this machine has no GPU)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr
from distributed import Client, Scheduler, SpecCluster
from typer.testing import CliRunner

import cloudfree
from cloudfree.catalog import bundled_catalog
from cloudfree.cli import app
from cloudfree.cluster import gpu_worker_specs, parse_gpus

ARGS = dict(period="month", context_days=20, memory_limit="2GB")


def test_one_pinned_worker_per_gpu_and_the_same_pixels(tmp_path):
    specs = gpu_worker_specs(("0", "1"), threads=1, memory_limit="2GB")
    with SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2)
        env = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        assert sorted(env.values()) == ["0", "1"]
        info = client.scheduler_info()["workers"]
        assert all(w["resources"] == {"GPU": 1} for w in info.values())
        # device "auto" is resolved on each worker (CPU here), not on the client
        spread = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "spread", device="auto",
                               chunk=32, **ARGS)
        tasks = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert len(tasks) == 2 and all(n > 0 for n in tasks.values()), f"a worker ran no task: {tasks}"
    alone = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "alone", device="cpu", chunk=32,
                          **ARGS)
    assert spread["method"] == alone["method"] == "model"
    a = xr.open_zarr(tmp_path / "spread" / "mosaic.zarr")["reflectance"].values
    b = xr.open_zarr(tmp_path / "alone" / "mosaic.zarr")["reflectance"].values
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_gpus_on_a_machine_without_gpus_is_named(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # the same on a GPU workstation
    with pytest.raises(ValueError, match="0 CUDA GPU"):
        parse_gpus("all")
    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--gpus", "2"])
    assert r.exit_code == 2 and "0 CUDA GPU" in r.output
    r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                 "--out", str(tmp_path), "--gpus", "0,x"])
    assert r.exit_code == 2 and "GPU ids" in " ".join(r.output.split())


def test_a_cluster_joined_through_a_scheduler_file_with_gpu_resources(tmp_path):
    """The HPC pattern (dask-jobqueue, dask-mpi): a scheduler and workers started as their own processes,
    meeting through a scheduler file; the workers carry GPU=1 as they would on a GPU partition."""
    import subprocess
    import sys
    import time

    sched_file = tmp_path / "scheduler.json"
    bin_ = os.path.join(os.path.dirname(sys.executable), "dask")
    procs = [subprocess.Popen([bin_, "scheduler", "--scheduler-file", str(sched_file), "--port", "0",
                               "--dashboard-address", ":0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        t0 = time.time()
        while not sched_file.exists() and time.time() - t0 < 60:
            time.sleep(0.2)
        procs.append(subprocess.Popen([bin_, "worker", "--scheduler-file", str(sched_file), "--nthreads", "2",
                                       "--resources", "GPU=1", "--memory-limit", "3GB"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(scheduler_file=str(sched_file)) as c:
            c.wait_for_workers(1, timeout=60)
            assert [w["resources"] for w in c.scheduler_info()["workers"].values()] == [{"GPU": 1}]
        r = CliRunner().invoke(app, ["run", "--stac", bundled_catalog(), "--start", "2019-08-01", "--end", "2019-08-31",
                                     "--out", str(tmp_path / "out"), "--scheduler", str(sched_file)])
        assert r.exit_code == 0, r.output
        text = " ".join(r.output.split())
        assert "inference device: auto (on each worker)" in text
        ds = xr.open_zarr(tmp_path / "out" / "mosaic.zarr")
        assert np.isfinite(ds["reflectance"].values).mean() > 0.9
    finally:
        for p in procs[::-1]:
            p.terminate()
            p.wait(timeout=30)


def _config(name: str) -> dict:
    from pathlib import Path

    import yaml

    return yaml.safe_load((Path(__file__).resolve().parents[1] / "pipelines" / "configs" / name).read_text())


def test_the_slurm_config_renders_a_gpu_job_script():
    """dask-jobqueue renders the sbatch script offline: one GPU per job, the worker carries GPU=1."""
    from dask_jobqueue import SLURMCluster

    c = _config("cluster-slurm.yaml")
    assert c["cluster"]["kind"] == "slurm" and c["tiles"]["device"] == "auto"
    with SLURMCluster(**c["cluster"]["options"]) as cluster:
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script
    assert "export GDAL_HTTP_MAX_RETRY=5" in script and "#SBATCH --cpus-per-task=16" in script


def test_the_kubernetes_config_makes_a_gpu_cluster_spec():
    from dask_kubernetes.operator import make_cluster_spec

    c = _config("cluster-kubernetes.yaml")
    spec = make_cluster_spec(**c["cluster"]["options"])
    worker = spec["spec"]["worker"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["args"][:4] == ["dask", "worker", "--resources", "GPU=1"]
    assert {"name": "GDAL_HTTP_MAX_RETRY", "value": "5"} in worker["env"]


def test_the_gateway_config_and_unknown_kinds():
    import inspect

    from dask_gateway import Gateway

    from cloudfree.cluster import start_cluster

    c = _config("cluster-gateway.yaml")
    assert c["cluster"]["kind"] == "gateway" and isinstance(c["cluster"]["options"], dict)
    assert "address" in inspect.signature(Gateway.__init__).parameters
    with pytest.raises(ValueError, match="choose one of slurm, kubernetes, gateway"):
        start_cluster("yarn")


def test_model_tasks_run_on_gpu_workers_and_decoding_beside_them(tmp_path):
    """``--gpus 1 --workers 1``: a GPU worker (GPU=1) and a CPU decode worker; the model's tasks ask
    for the GPU resource, so they run on the GPU worker only, and the picture is unchanged."""
    from distributed import get_task_stream

    specs = gpu_worker_specs(("0",), threads=1, memory_limit="2GB", cpu_workers=1)
    assert specs["cpu-0"]["options"]["env"] == {"CUDA_VISIBLE_DEVICES": ""} and "resources" not in specs["cpu-0"]["options"]
    with SpecCluster(workers=specs, scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}}) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(2)
        by_name = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
        with get_task_stream(client) as ts:
            mixed = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "mixed", device="auto",
                                  chunk=32, **ARGS)
    where: dict[str, set] = {}
    for t in ts.data:
        key = t["key"][0] if isinstance(t["key"], tuple) else t["key"]
        where.setdefault("predict" if "cloudfree-predict" in str(key) else "other", set()).add(t["worker"])
    assert where["predict"] == {by_name["gpu-0"]}, where
    assert by_name["cpu-0"] in where["other"], "the decode worker ran nothing"
    alone = cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "alone", device="cpu", chunk=32,
                          **ARGS)
    assert mixed["method"] == alone["method"] == "model"
    np.testing.assert_allclose(xr.open_zarr(tmp_path / "mixed" / "mosaic.zarr")["reflectance"].values,
                               xr.open_zarr(tmp_path / "alone" / "mosaic.zarr")["reflectance"].values, atol=1e-6)


def test_no_gpu_resource_no_annotation():
    """Threads, or a cluster without GPU resources: the model's tasks carry no resource request
    (an annotated task would wait forever there)."""
    from distributed import LocalCluster

    from cloudfree.cluster import gpu_task_resources

    assert gpu_task_resources() is None
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as c, Client(c):
        assert gpu_task_resources() is None
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      resources={"GPU": 1}) as c, Client(c):
        assert gpu_task_resources() == {"GPU": 0.5}


def test_the_model_is_prepared_in_every_process_that_runs_it():
    """``--compile`` compiles before the first read wherever model tasks run: in this process for
    threads (or without a cluster), once in each worker process otherwise."""
    from distributed import LocalCluster

    from cloudfree.cluster import run_on_model_processes

    assert run_on_model_processes(os.getpid) == {"local": os.getpid()}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as c, Client(c):
        assert run_on_model_processes(os.getpid) == {"local": os.getpid()}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, Client(c):
        pids = run_on_model_processes(os.getpid)
        assert len(pids) == 2 and os.getpid() not in pids.values() and len(set(pids.values())) == 2


def _burn(seconds: float) -> None:
    import time

    t0 = time.time()
    while time.time() - t0 < seconds:
        sum(i * i for i in range(10_000))


@pytest.fixture
def busy_machine():
    """Every core kept busy by other processes for the duration of the test (a loaded CI box)."""
    import multiprocessing as mp

    procs = [mp.get_context("spawn").Process(target=_burn, args=(900,), daemon=True) for _ in range(2 * (os.cpu_count() or 1))]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join()


@pytest.mark.slow
def test_the_same_pixels_under_load_with_any_worker_and_thread_count(tmp_path, busy_machine):
    """One job on a loaded machine, computed in this process (Dask threads), by two single-thread
    worker processes and by one two-thread worker with torch on one thread: every output layer is
    equal bit for bit (a result that depends on scheduling would be silently wrong)."""
    import dask
    import torch
    from distributed import LocalCluster

    def layers(name):
        ds = xr.open_zarr(tmp_path / name / "mosaic.zarr")
        return {k: ds[k].values for k in ("reflectance", "clear_count", "uncertainty", "filled") if k in ds}

    with dask.config.set(scheduler="threads", num_workers=2):
        cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "threads", device="cpu", chunk=32, **ARGS)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c, Client(c):
        cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "workers", device="cpu", chunk=32, **ARGS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as c, Client(c):
            cloudfree.run(bundled_catalog(), "2019-08-01", "2019-09-30", tmp_path / "one", device="cpu", chunk=16, **ARGS)
    finally:
        torch.set_num_threads(threads)
    a, b, c_ = layers("threads"), layers("workers"), layers("one")
    assert set(a) == set(b) == set(c_) and "reflectance" in a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k}: threads vs two worker processes")
        np.testing.assert_array_equal(a[k], c_[k], err_msg=f"{k}: threads vs one worker, torch on one thread, chunk 16")
