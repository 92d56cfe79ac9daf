"""The tile function: numpy block in → numpy block out, on a global patch grid with feathering.

Patches of ``patch`` pixels sit on a grid anchored to the *whole image* (stride
``patch - 2*overlap``) and are blended with linear ramps over their overlaps. Because the grid is
global and each Dask block carries a halo of ``patch`` pixels, every output pixel is computed from
exactly the same patches whatever the tiling: a tiled run equals a single-tile run (no seams).
The model is loaded once per worker process (cached), batched, and run under bf16 autocast on GPU.
"""

from __future__ import annotations

from ..errors import InputError

from ..tuning import GPU_PIXELS_PER_BATCH, GPU_BLOCKS_AT_ONCE, PINNED_BUFFERS

import contextlib
import functools
import math
import threading
from dataclasses import dataclass

import numpy as np

from ..heap import release_heap

__all__ = ["TileConfig", "compile_ahead", "predict_block", "predict_pixels", "feather", "load_model_cached", "model_on_device", "patch_starts",
           "resolve_device", "check_device", "pixels_numpy"]


@dataclass(frozen=True)
class TileConfig:
    """How the model runs over a block: patches of ``patch`` px blended over ``overlap`` px,
    ``batch`` patches per forward pass, on ``device``. (The name is kept for the public API and the
    pipelines' YAML ``tiles:`` key; these are patches of a Dask block, never Sentinel-2 tiles.)"""

    patch: int = 256
    overlap: int = 16
    batch: int = 16
    device: str = "auto"
    amp: bool = True
    pass_through: bool = True
    """Band-aware per-pixel models: keep the target date's own clear observation (see the model card)."""
    compile: bool = False
    """Per-pixel models on a GPU: run through ``torch.compile`` (compiled once per worker process,
    before the first read, kernels cached between runs; if compilation fails the worker warns once
    and stays eager). Off by default: the model alone runs faster compiled, but a full tile took
    longer end to end on the GPU host, where the reads, not the GPU, set the pace
    (``benchmarks/RESULTS.md``)."""

    def compiles(self, device: str) -> bool:
        """Whether the model runs compiled on ``device`` (a resolved device)."""
        return device.startswith("cuda") and self.compile

    @property
    def stride(self) -> int:
        return self.patch - 2 * self.overlap

    @property
    def halo(self) -> int:
        return self.patch

    def __post_init__(self) -> None:
        if self.overlap < 1 or self.patch - 2 * self.overlap < 1:
            raise InputError(f"need 0 < overlap < patch/2 (patch={self.patch}, overlap={self.overlap})")


def load_model_cached(path: str, device: str):
    """One model per (checkpoint, device) per process: Dask tasks on a worker share it (in numpy
    where torch is not installed)."""
    from ..extras import has_torch

    return _load_model(path, device, "torch" if has_torch() else "numpy")


@functools.lru_cache(maxsize=4)
def _load_model(path: str, device: str, backend: str):
    from ..models import load_checkpoint

    model, info = load_checkpoint(path, map_location=device, backend=backend)
    return model.to(device), info, threading.Lock()


_MODULES: dict[tuple[int, str], tuple] = {}
_MODULES_LOCK = threading.Lock()


def model_on_device(model, device: str):
    """``(module, lock)`` for a checkpoint path (loaded once per process) or an ``nn.Module``
    (moved to ``device`` once per process; callers in a notebook pass their own network)."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        net, _, lock = load_model_cached(str(model), device)
        return net, lock
    key = (id(model), device)
    with _MODULES_LOCK:
        if key not in _MODULES:
            _MODULES[key] = (model.to(device).eval(), threading.Lock(), model)  # keep `model` alive: ids stay unique
        net, lock, _ = _MODULES[key]
    return net, lock


def check_device(device: str) -> None:
    """The spelling of ``--device`` (auto, cpu, cuda, cuda:N), checked where the GPUs are not (a client)."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise InputError(f"--device {device!r} is not a device; choose auto, cpu, cuda or cuda:N")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` where a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error
    (and without torch, which the core install leaves out, one naming the extra)."""
    from ..extras import has_torch, require_torch

    check_device(device)
    if not has_torch():
        if device == "auto" or device == "cpu":
            return "cpu"
        require_torch(f"--device {device}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available (use --device cpu or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def feather(patch: int, overlap: int) -> np.ndarray:
    """2-D blending weights: linear ramps over ``2*overlap`` at each edge, 1 inside."""
    i = np.arange(patch) + 0.5
    ramp = np.clip(np.minimum(i, patch - i) / (2 * overlap), 1e-3, 1.0)
    return np.outer(ramp, ramp).astype(np.float32)


def patch_starts(lo: int, hi: int, cfg: TileConfig) -> list[int]:
    """Global starts of the grid patches that touch the core range [lo, hi)."""
    s, o = cfg.stride, cfg.overlap
    k0 = math.floor((lo + o - cfg.patch) / s) + 1
    k1 = math.ceil((hi + o) / s) - 1
    return [k * s - o for k in range(k0, k1 + 1) if k * s - o < hi and k * s - o + cfg.patch > lo]


def predict_block(x: np.ndarray, clear: np.ndarray, *, dt: np.ndarray, model, cfg: TileConfig,
                  origin: tuple[int, int], bands: list[str] | None = None) -> np.ndarray:
    """Predict the core of one halo-extended block.

    x: (T, C, h + 2H, w + 2H) reflectance (NaN = no data); clear: (T, h + 2H, w + 2H); ``origin``:
    the core's first (row, col) in the whole image; ``model``: checkpoint path or ``nn.Module``.
    A band-aware model (``pixel_terramind``) also gets ``bands`` and its per-date context features,
    computed over the halo'd block. Returns (C, h, w) float32 reflectance for the block's core.
    """
    import torch

    halo = cfg.halo
    y0, x0 = origin
    y1, x1 = y0 + x.shape[-2] - 2 * halo, x0 + x.shape[-1] - 2 * halo
    device = resolve_device(cfg.device)
    model, lock = model_on_device(model, device)
    t, c = x.shape[:2]
    # Move the whole extended block once, then cut patches on the device: copying patch stacks on
    # the host was the bottleneck (each patch carries T x C channels).
    xb_all = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    mb_all = torch.from_numpy(np.ascontiguousarray(clear).astype(bool)).to(device)
    acc = torch.zeros((c, y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    wsum = torch.zeros((y1 - y0, x1 - x0), dtype=torch.float32, device=device)
    wpatch = torch.from_numpy(feather(cfg.patch, cfg.overlap)).to(device)
    jobs = [(py, px) for py in patch_starts(y0, y1, cfg) for px in patch_starts(x0, x1, cfg)]
    dtt = torch.from_numpy(np.asarray(dt, np.float32)).to(device)
    use_amp = cfg.amp and device.startswith("cuda")
    aware = getattr(model, "band_aware", False)
    if aware:
        from ..models.pixel import context_features

        usable = np.asarray(clear, bool) & np.isfinite(x).all(1)
        aux_all = torch.from_numpy(context_features(usable)).to(device)
    for i in range(0, len(jobs), cfg.batch):
        chunk = jobs[i : i + cfg.batch]
        sl = [(py - y0 + halo, px - x0 + halo) for py, px in chunk]  # into the extended block
        xb = torch.stack([xb_all[:, :, ly : ly + cfg.patch, lx : lx + cfg.patch] for ly, lx in sl])
        mb = torch.stack([mb_all[:, ly : ly + cfg.patch, lx : lx + cfg.patch] for ly, lx in sl])
        with lock, torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp):
            if aware:
                auxb = torch.stack([aux_all[:, :, ly : ly + cfg.patch, lx : lx + cfg.patch] for ly, lx in sl])
                with _passing_through(model, cfg):
                    pred = model(xb, mb, dtt.expand(len(chunk), t), bands=bands, aux=auxb)["output"]
            else:
                pred = model(xb, mb, dtt.expand(len(chunk), t))["output"]
        pred = pred.float()
        for (py, px), p in zip(chunk, pred):
            # Clip the patch to the core and accumulate with its feather weights.
            cy0, cy1 = max(py, y0), min(py + cfg.patch, y1)
            cx0, cx1 = max(px, x0), min(px + cfg.patch, x1)
            wp = wpatch[cy0 - py : cy1 - py, cx0 - px : cx1 - px]
            acc[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] += p[:, cy0 - py : cy1 - py, cx0 - px : cx1 - px] * wp
            wsum[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] += wp
    out = (acc / wsum).cpu().numpy().astype(np.float32)
    del xb_all, mb_all, acc, wsum
    release_heap()
    return out


@contextlib.contextmanager
def _passing_through(net, cfg: TileConfig):
    """``cfg.pass_through`` on the shared module for one call, restored after (hold its lock)."""
    keep = getattr(net, "pass_through", None)
    if keep is None:
        yield
        return
    net.pass_through = keep and cfg.pass_through
    try:
        yield
    finally:
        net.pass_through = keep


_COMPILED: dict[int, object] = {}
_GPU_SLOTS: dict[str, "queue.Queue"] = {}
_SLOTS_LOCK = threading.Lock()


@contextlib.contextmanager
def gpu_slot(device: str):
    """One of :data:`GPU_BLOCKS_AT_ONCE` slots of ``device``, each with its own CUDA stream: a
    block's upload, compute and download run on the slot's stream, so one block's copies overlap
    another's compute, and PyTorch's per-stream memory caches stay as few as the slots."""
    import queue

    import torch

    with _SLOTS_LOCK:
        if device not in _GPU_SLOTS:
            q: queue.Queue = queue.Queue()
            for _ in range(GPU_BLOCKS_AT_ONCE):
                q.put(torch.cuda.Stream(device=device))
            _GPU_SLOTS[device] = q
    stream = _GPU_SLOTS[device].get()
    try:
        with torch.cuda.stream(stream):
            yield stream
    finally:
        _GPU_SLOTS[device].put(stream)


def _compiled(net):
    """``torch.compile(net)`` once per process, for the one input shape :func:`pixels_on_device`
    gives it (static: no recompiles, and kernels specialised to that shape); None once compilation
    has failed here. Inductor's caches go to a lasting place (``$XDG_CACHE_HOME/cloudfree``, unless
    ``TORCHINDUCTOR_CACHE_DIR`` is set), so a later run loads the kernels instead of compiling them."""
    import os

    import torch

    key = id(net)
    if key not in _COMPILED:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        _COMPILED[key] = torch.compile(net, dynamic=False)
    return _COMPILED[key]


def compile_ahead(model, cfg: TileConfig, n_dates: list[int], bands: list[str]) -> float:
    """Compile the per-pixel model here for the inputs :func:`pixels_on_device` will give it (one
    per number of dates), before any block is read: compiling beside many decoding threads takes
    several times as long as alone. Returns the seconds spent (0 where nothing compiles: no GPU
    here, or ``compile=False``)."""
    import time

    from ..extras import has_torch

    if not has_torch():
        return 0.0
    import torch

    if not torch.cuda.is_available():
        return 0.0
    device = resolve_device(cfg.device)
    if not cfg.compiles(device):
        return 0.0
    net, lock = model_on_device(model, device)
    size = GPU_PIXELS_PER_BATCH
    t0 = time.perf_counter()
    with lock, torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp), \
            _passing_through(net, cfg):
        for t in sorted(set(n_dates)):
            x = torch.full((1, t, len(bands), 1, size), float("nan"), device=device)
            valid = torch.zeros((1, t, 1, size), dtype=torch.bool, device=device)
            aux = torch.ones((1, t, 3, 1, size), device=device)
            _forward(net, cfg, device, x, valid, torch.zeros((1, t), device=device), bands=list(bands), aux=aux)
    torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def compile_cache_dir():
    """Where compiled kernels are kept between runs."""
    import os
    from pathlib import Path

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloudfree" / "torchinductor"


def _forward(net, cfg: TileConfig, device: str, *args, **kwargs):
    """The model call, compiled where asked and possible, eager otherwise (with one warning)."""
    fn = _compiled(net) if cfg.compiles(device) else None
    if fn is not None:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # an inductor/triton failure must not fail the run
            import warnings

            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); running eager", stacklevel=2)
            _COMPILED[id(net)] = None
    return net(*args, **kwargs)


_PINNED: dict[str, "queue.Queue"] = {}


@contextlib.contextmanager
def pinned_buffer(device: str):
    """One of :data:`PINNED_BUFFERS` reused pinned buffers of ``device`` (None on the CPU), held
    until the block's copies are done: callers end with :func:`download`, which waits for them."""
    import queue

    if not device.startswith("cuda"):
        yield None
        return
    with _SLOTS_LOCK:
        if device not in _PINNED:
            _PINNED[device] = queue.Queue()
            for _ in range(PINNED_BUFFERS):
                _PINNED[device].put([None])
    holder = _PINNED[device].get()
    ok = False
    try:
        yield holder
        ok = True
    finally:
        if not ok:  # a failed block may leave copies in flight from the buffer: let them finish first
            import torch

            torch.cuda.synchronize(device)
        _PINNED[device].put(holder)


def _upload_all(arrays: list[np.ndarray], device: str, buffer) -> list:
    """``arrays`` on ``device``, each in its own dtype (uint16 DN stays 2 bytes), through the pinned
    ``buffer`` (:func:`pinned_buffer`), on the current stream (the caller's GPU slot)."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if not device.startswith("cuda"):  # the CPU computes on the arrays themselves: no copy
        return to_device(arrays, device)
    hosts = staging([(a.shape, a.dtype) for a in arrays], device, buffer)
    for h, a in zip(hosts, arrays):
        np.copyto(h, a)
    return to_device(hosts, device)


def staging(specs: list[tuple[tuple[int, ...], np.dtype]], device: str, buffer) -> list[np.ndarray]:
    """Host arrays of these (shape, dtype) to fill and then send with :func:`to_device`: views of
    the pinned ``buffer`` (grown as needed) on a GPU, so no further host copy; plain arrays on the CPU."""
    if not device.startswith("cuda"):
        return [np.empty(shape, dtype) for shape, dtype in specs]
    import torch

    sizes = [int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in specs]
    starts = np.cumsum([0] + [-(-n // 256) * 256 for n in sizes])  # 256-byte aligned slices
    total = int(starts[-1])
    if buffer[0] is None or buffer[0].numel() < total:
        buffer[0] = None  # free the smaller one first
        buffer[0] = torch.empty(max(total, 1 << 20), dtype=torch.uint8, pin_memory=True)
    return [buffer[0][int(s) : int(s) + n].numpy().view(dtype).reshape(shape)
            for (shape, dtype), s, n in zip(specs, starts, sizes)]


def to_device(hosts: list[np.ndarray], device: str) -> list:
    """Tensors of :func:`staging`'s arrays on ``device`` (asynchronous copies on the current stream)."""
    import torch

    if not device.startswith("cuda"):
        return [torch.from_numpy(h) for h in hosts]
    return [torch.from_numpy(h).to(device, non_blocking=True) for h in hosts]


def download(out, device: str) -> np.ndarray:
    """A device tensor back on the host through pinned memory (no extra host copy)."""
    import torch

    if not device.startswith("cuda"):
        return out.numpy()
    host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
    host.copy_(out, non_blocking=True)
    torch.cuda.current_stream(device).synchronize()
    return host.numpy()


def predict_pixels(x: np.ndarray, clear: np.ndarray, *, dt: np.ndarray, model, cfg: TileConfig, bands: list[str],
                   margin: int = 0, pixels_per_batch: int | None = None,
                   decode: tuple[float, float, int] | None = None, reach: int = 0) -> np.ndarray:
    """A per-pixel model (no spatial context in the network) over one block, no halo: x (T, C, h, w),
    clear (T, h + 2m, w + 2m) usable mask with a margin of ``margin`` pixels for the per-date
    context features (local usable fractions, distance to the nearest unusable pixel).
    Returns (C, h, w). Rows are batched so memory stays bounded whatever the block size.

    ``decode=(scale, offset, fill)``: x holds the stored digital numbers (uint16), decoded to
    reflectance on the device (``fill`` = no data): half the bytes of float32 cross the bus and no
    CPU pass converts them. On a GPU the block goes up once through a pinned buffer on its slot's
    stream (see :func:`gpu_slot`), the context features are computed there, and the result comes
    back through pinned memory.

    ``reach``: x carries that many extra pixels on every side (≤ ``margin``), over which the model
    also runs, so the target date's local departure (:func:`~cloudfree.models.pixel.apply_departure`,
    when the model's ``departure`` is set) sees the same neighbourhood for any tiling.
    """
    device = resolve_device(cfg.device)
    if reach > margin:
        raise InputError(f"reach {reach} exceeds the context margin {margin}")
    from ..extras import has_torch

    if not has_torch():
        return pixels_numpy(x, np.asarray(clear, bool), dt=dt, model=model, cfg=cfg, bands=bands, margin=margin,
                            pixels_per_batch=pixels_per_batch, decode=decode, reach=reach)
    cuda = device.startswith("cuda")
    import torch

    with pinned_buffer(device) as buf, (gpu_slot(device) if cuda else contextlib.nullcontext()), \
            torch.inference_mode():
        usable = np.asarray(clear, bool)
        xd, ud = _upload_all([x, usable], device, buf)
        out = pixels_on_device(xd, ud, dt=dt, model=model, cfg=cfg, device=device, bands=bands, margin=margin,
                               pixels_per_batch=pixels_per_batch, decode=decode, reach=reach, host_clear=usable)
        out = download(out, device)
    del xd, ud
    release_heap()  # a block's model tensors on the CPU are freed: see cloudfree.heap
    return out


def pixels_on_device(xd, ud, *, dt, model, cfg: TileConfig, device: str, bands: list[str], margin: int,
                     pixels_per_batch: int | None = None, decode=None, reach: int = 0, host_clear=None):
    """:func:`predict_pixels` on tensors already on ``device`` (x: (T, C, h + 2q, w + 2q),
    usable: (T, h + 2m, w + 2m)); returns the (C, h, w) float32 tensor there. ``decode``'s scale
    and offset may be per date (length T)."""
    import torch

    from ..models.pixel import apply_departure, context_features, context_features_torch

    net, lock = model_on_device(model, device)
    t, c, h, w = xd.shape
    q = reach
    m = margin - q  # the model runs over the block and its reach; context features need m more
    cuda = device.startswith("cuda")
    n = h * w
    # Pixels go to the model in flat batches of one length (with ``cfg.compile`` the last one is
    # padded as no data): the network is per pixel, so a batch needs no rows, and one input shape
    # means one compiled graph for every block, edge blocks included.
    ppb = pixels_per_batch or (GPU_PIXELS_PER_BATCH if cuda else 16384)
    size = ppb if cfg.compile else min(ppb, n)
    use_amp = cfg.amp and cuda
    if decode is not None:
        scale, offset, fill = decode
        scale = torch.as_tensor(np.asarray(scale, np.float32), device=device).reshape(-1, 1, 1)
        offset = torch.as_tensor(np.asarray(offset, np.float32), device=device).reshape(-1, 1, 1)
        nan = torch.tensor(float("nan"), device=device)

    def reflectance(block):  # per batch: memory stays that of the stored block
        if decode is None:
            return block.float()
        return torch.where(block == fill, nan, block.float() * scale + offset)

    def padded(a, value):  # (…, L) → (…, size), contiguous (a compiled graph guards strides too)
        if a.shape[-1] == size:
            return a.contiguous()
        b = a.new_full((*a.shape[:-1], size), value)
        b[..., : a.shape[-1]] = a
        return b

    if margin:
        ctx = context_features_torch(ud, m) if cuda or host_clear is None else \
            torch.from_numpy(context_features(host_clear, m))
        ctx = ctx.reshape(t, 3, n)
    else:
        ctx = None
    xf = xd.reshape(t, c, n)
    core = ud[:, m : m + h, m : m + w].reshape(t, n)
    dtt = torch.from_numpy(np.asarray(dt, np.float32)).to(device)[None]
    out = torch.empty((c, h, w), dtype=torch.float32, device=device)
    dep = getattr(net, "departure", None) if q else None
    if dep:
        temporal = torch.empty((c, h, w), dtype=torch.float32, device=device)
        kept = torch.empty((1, h, w), dtype=torch.float32, device=device)
    with lock, torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_amp), _passing_through(net, cfg):
        for p0 in range(0, n, size):
            p1 = min(p0 + size, n)
            k = p1 - p0
            xb = padded(reflectance(xf[:, :, p0:p1]), float("nan"))[None, :, :, None]  # (1, T, C, 1, size)
            aux = padded(ctx[:, :, p0:p1], 1.0)[None, :, :, None] if ctx is not None else None
            res = _forward(net, cfg, device, xb, padded(core[:, p0:p1], False)[None, :, None], dtt, bands=bands,
                           aux=aux)
            out.view(c, n)[:, p0:p1] = res["output"][0, :, 0, :k].float()
            if dep:
                temporal.view(c, n)[:, p0:p1] = res["temporal"][0, :, 0, :k].float()
                kept.view(1, n)[:, p0:p1] = res["kept"][0, :, 0, :k].float()
    if dep:
        return apply_departure(out, temporal, kept, q, dep["gain"], dep.get("min_fraction", 0.05)).contiguous()
    if q:
        return out[:, q : h - q, q : w - q].contiguous()
    return out


def pixels_numpy(x: np.ndarray, usable: np.ndarray, *, dt, model, cfg: TileConfig, bands: list[str], margin: int,
                 pixels_per_batch: int | None = None, decode=None, reach: int = 0) -> np.ndarray:
    """:func:`pixels_on_device` in numpy on the CPU, for the core install (no torch): the same
    batches, context features, decoding and departure, through
    :class:`~cloudfree.models.pixel_numpy.NumpyPixelTimeGate`. Returns (C, h, w) float32."""
    from ..models.pixel_features import context_features
    from ..models.pixel_numpy import apply_departure_np

    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        net, _, lock = _load_model(str(model), "cpu", "numpy")
    else:
        net, lock = model_on_device(model, "cpu")
    t, c, h, w = x.shape
    q, m, n = reach, margin - reach, h * w
    size = min(pixels_per_batch or 16384, n)
    if decode is not None:
        scale, offset, fill = decode
        scale = np.asarray(scale, np.float32).reshape(-1, 1, 1)
        offset = np.asarray(offset, np.float32).reshape(-1, 1, 1)

    def reflectance(block):
        if decode is None:
            return block.astype(np.float32)
        return np.where(block == fill, np.float32(np.nan), block.astype(np.float32) * scale + offset)

    ctx = context_features(usable, m).reshape(t, 3, n) if margin else None
    xf = x.reshape(t, c, n)
    core = np.ascontiguousarray(usable[:, m : m + h, m : m + w]).reshape(t, n)
    dtt = np.asarray(dt, np.float32)[None]
    out = np.empty((c, n), np.float32)
    dep = getattr(net, "departure", None) if q else None
    temporal, kept = np.empty((c, n), np.float32), np.empty((1, n), np.float32)
    with lock, _passing_through(net, cfg):
        for p0 in range(0, n, size):
            p1 = min(p0 + size, n)
            aux = ctx[None, :, :, None, p0:p1] if ctx is not None else None
            res = net(reflectance(xf[:, :, p0:p1])[None, :, :, None], core[None, :, None, p0:p1], dtt, bands=bands, aux=aux)
            out[:, p0:p1] = res["output"][0, :, 0]
            if dep:
                temporal[:, p0:p1] = res["temporal"][0, :, 0]
                kept[:, p0:p1] = res["kept"][0, :, 0]
    out = out.reshape(c, h, w)
    if dep:
        return apply_departure_np(out, temporal.reshape(c, h, w), kept.reshape(1, h, w), q, dep["gain"],
                                  dep.get("min_fraction", 0.05))
    return np.ascontiguousarray(out[:, q : h - q, q : w - q]) if q else out
