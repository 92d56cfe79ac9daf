"""Learned cloud and cloud-shadow masks beside SCL: ukis-csmask's ONNX networks, run per Dask block.

ukis-csmask (DLR, Apache-2.0; Wieland et al., RSE 2019 and ISPRS 2022) ships U-Nets for Sentinel-2
L2A in its wheel: 6 bands (B02 B03 B04 B08 B11 B12) or 4 bands (B02 B03 B04 B08), input
``(N, C, 256, 256)`` float32 reflectance in [0, 1] standardised with the mean/std in the model's
JSON, output logits for 0 = clear, 1 = cloud, 2 = cloud shadow. Its own ``CSmask`` class tiles a
whole in-memory image; here the session is created once per worker process, windows of 256 px lie
on a grid anchored to the whole image (stride 192, the centre 192 px of each window kept) and every
block carries a mirrored halo, so a tiled run equals an untiled one and there are no seams.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from .spec import MASK_SOURCES  # defined with the request types

from ..blocks import map_windows

__all__ = ["CLEAR", "CLOUD", "SHADOW", "NODATA", "MASK_SOURCES", "csmask_bands", "classify", "learned_mask",
           "mask_model_available"]

log = logging.getLogger(__name__)

CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255
WINDOW, STRIDE = 256, 192
MARGIN = (WINDOW - STRIDE) // 2
HALO = WINDOW  # covers the grid windows that reach into any block from outside
_MODELS = {6: ("B02", "B03", "B04", "B08", "B11", "B12"), 4: ("B02", "B03", "B04", "B08")}


def csmask_bands(bands) -> tuple[str, ...] | None:
    """The bands the best ukis-csmask model for ``bands`` reads (6 before 4), or None."""
    have = set(bands)
    for n in (6, 4):
        if set(_MODELS[n]) <= have:
            return _MODELS[n]
    return None


def mask_model_available() -> str | None:
    """None when ukis-csmask and onnxruntime import, else what to install."""
    try:
        import onnxruntime  # noqa: F401
        import ukis_csmask  # noqa: F401
    except ImportError:
        return "the learned mask needs ukis-csmask and onnxruntime: pip install 'cloudfree[masks]'"
    return None


def _model_files(n_bands: int) -> tuple[Path, Path]:
    import ukis_csmask

    root = Path(ukis_csmask.__file__).parent
    return root / f"model_{n_bands}b_l2a.onnx", root / f"model_{n_bands}b_l2a.json"


@functools.lru_cache(maxsize=4)
def _session(n_bands: int, device: str = "auto"):
    """(session, mean, std, lock) once per process and model: Dask tasks on a worker share it."""
    import onnxruntime as ort

    onnx, meta = _model_files(n_bands)
    stats = json.loads(meta.read_text())["data"]["dataset_statistics"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("CLOUDFREE_MASK_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)
    so.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu: [masks-gpu]
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(str(onnx), sess_options=so, providers=providers)
    mean = np.asarray(stats["img"][0], np.float32)[:, None, None]
    std = np.asarray(stats["img"][1], np.float32)[:, None, None]
    return sess, mean, std, threading.Lock()


def _starts(lo: int, hi: int) -> list[int]:
    """Global starts of the grid windows whose kept centre covers rows ``lo..hi``."""
    return [k * STRIDE - MARGIN for k in range(lo // STRIDE, -(-hi // STRIDE))]


def classify(window: np.ndarray, origin: tuple[int, int] = (0, 0), *, halo: int = HALO, batch: int = 8,
             device: str = "auto") -> np.ndarray:
    """(C, h + 2·halo, w + 2·halo) reflectance in a model's band order → (h, w) uint8 classes
    (0 clear, 1 cloud, 2 shadow, 255 no data) for the block at global ``origin``."""
    c, hh, ww = window.shape
    h, w = hh - 2 * halo, ww - 2 * halo
    y0, x0 = origin
    sess, mean, std, lock = _session(c, device)
    nodata = ~np.isfinite(window).all(0)
    x = (np.nan_to_num(window, nan=0.0).astype(np.float32) - mean) / std
    out = np.full((h, w), NODATA, np.uint8)
    jobs = [(gy, gx) for gy in _starts(y0, y0 + h) for gx in _starts(x0, x0 + w)]
    name = sess.get_inputs()[0].name
    for i in range(0, len(jobs), batch):
        part = jobs[i : i + batch]
        tiles = np.stack([x[:, gy - y0 + halo : gy - y0 + halo + WINDOW, gx - x0 + halo : gx - x0 + halo + WINDOW]
                          for gy, gx in part])
        logits = sess.run(None, {name: np.ascontiguousarray(tiles)})[0]
        cls = logits.argmax(1).astype(np.uint8)
        for (gy, gx), k in zip(part, cls):
            # keep the centre STRIDE px of the window, clipped to this block
            ky0, kx0 = max(gy + MARGIN, y0), max(gx + MARGIN, x0)
            ky1, kx1 = min(gy + MARGIN + STRIDE, y0 + h), min(gx + MARGIN + STRIDE, x0 + w)
            if ky1 > ky0 and kx1 > kx0:
                out[ky0 - y0 : ky1 - y0, kx0 - x0 : kx1 - x0] = k[ky0 - gy : ky1 - gy, kx0 - gx : kx1 - gx]
    out[nodata[halo : halo + h, halo : halo + w]] = NODATA
    return out


def learned_mask(refl: xr.DataArray, chunk: int = 1024, *, device: str = "auto") -> xr.DataArray:
    """``cloud_class(time, y, x)`` uint8 (0 clear, 1 cloud, 2 shadow, 255 no data) from a lazy
    ``reflectance(time, band, y, x)``, one date at a time; raises ``LookupError`` where the bands a
    mask model needs are missing (callers fall back to SCL and say so). ``device="auto"`` uses CUDA
    where onnxruntime-gpu sees a GPU on the worker, else the CPU."""
    bands = [str(b) for b in refl.band.values]
    need = csmask_bands(bands)
    if need is None:
        raise LookupError(f"the learned mask needs B02, B03, B04, B08 (and B11, B12 for the better model); "
                          f"the cube has {', '.join(bands)}")
    missing = mask_model_available()
    if missing:
        raise LookupError(missing)
    sub = refl.sel(band=list(need)).data
    per_date = [map_windows(classify, sub[t], HALO, chunk, out_lead=(), dtype=np.uint8,
                            name=f"cloudfree-csmask-{sub.name}-{t}", device=device) for t in range(sub.shape[0])]
    data = da.stack(per_date, axis=0)
    out = xr.DataArray(data, dims=("time", "y", "x"), coords={k: refl.coords[k] for k in ("time", "y", "x")})
    return out.assign_attrs(long_name="learned cloud mask (ukis-csmask): 0 clear, 1 cloud, 2 cloud shadow, 255 no data",
                            model=f"ukis-csmask {len(need)}-band L2A ({', '.join(need)})", flag_values=[0, 1, 2, 255],
                            flag_meanings="clear cloud cloud_shadow no_data")


def dilate(unusable: xr.DataArray, pixels: int) -> xr.DataArray:
    """Grow the unusable pixels of each date by ``pixels`` (a disk), block-wise with a halo of the
    same size, so tiling never changes the result (odc-algo's ``mask_cleanup`` idea, with scipy)."""
    if pixels <= 0:
        return unusable
    from scipy.ndimage import binary_dilation

    from ..bands import disk

    shape = disk(pixels)

    def grow(block: np.ndarray) -> np.ndarray:
        return np.stack([binary_dilation(b, structure=shape) for b in block.astype(bool)])

    data = unusable.data.astype(bool)
    if min(min(data.chunks[1]), min(data.chunks[2])) < pixels:  # map_overlap needs blocks wider than the halo
        data = data.rechunk({1: -1, 2: -1})
    grown = data.map_overlap(grow, depth={0: 0, 1: pixels, 2: pixels}, boundary="none", dtype=bool)
    return unusable.copy(data=grown)
