"""Reader for SEN12MS-CR-TS (Ebel et al. 2022; TUM mediaTUM 1639953 / 1659251).

Published layout (after merging the per-ROI archives)::

    ROOT/ROIs1868/17/S2/0/s2_ROIs1868_17_ImgNo_0_2018-01-03_patch_12.tif
    ROOT/ROIs1868/17/S1/0/s1_ROIs1868_17_ImgNo_0_2018-01-03_patch_12.tif
         ^ROI set ^ROI ^mod ^time index 0..29              ^date      ^patch

S2 patches are 256×256 L1C with 13 bands (B01…B12 incl. B10) in DN (reflectance × 10000). This
reader drops B10 to match the 12-band order used everywhere else, scales to reflectance, and
builds a :class:`~cloudfree.evaluate.examples.Series` per patch plus the data set's own example format:
``n`` input dates, their cloud masks, and the least-cloudy date as the target. Licence: CC-BY 4.0
(see the data set page); cite Ebel et al., IEEE TGRS 2022.

Cloud masks: the data set ships none (its loader runs s2cloudless). ``cloud_mask`` defaults to a
simple, documented brightness/whiteness test; pass your own function (e.g. s2cloudless) to replace it.
"""

from __future__ import annotations

from ..errors import DataError

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .examples import Example, Series

__all__ = ["Sen12Patch", "find_patches", "read_patch", "least_cloudy_example", "brightness_cloud_mask", "TEST_ROIS"]

_NAME = re.compile(r"s2_(?P<roiset>ROIs\d+)_(?P<roi>\d+)_ImgNo_(?P<t>\d+)_(?P<date>\d{4}-\d{2}-\d{2})_patch_(?P<patch>\d+)\.tif$")
TEST_ROIS = {("ROIs1868", "119"), ("ROIs1970", "139"), ("ROIs2017", "108"), ("ROIs2017", "63"), ("ROIs1158", "106"),
             ("ROIs1868", "73"), ("ROIs2017", "32"), ("ROIs1868", "100"), ("ROIs1970", "132"), ("ROIs2017", "103"),
             ("ROIs1868", "142"), ("ROIs1970", "20"), ("ROIs2017", "140")}
"""The official test split (same ROIs as the data set's own loader)."""
B10_INDEX = 10


@dataclass(frozen=True)
class Sen12Patch:
    roiset: str
    roi: str
    patch: int
    files: tuple[Path, ...]
    """S2 files ordered by time index."""
    dates: tuple[str, ...]

    @property
    def split(self) -> str:
        return "test" if (self.roiset, self.roi) in TEST_ROIS else "train"


def find_patches(root: str | Path, split: str = "all") -> list[Sen12Patch]:
    """Index every S2 patch time series under ``root`` (``split``: all | train | test)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"SEN12MS-CR-TS root {root} does not exist")
    groups: dict[tuple[str, str, int], dict[int, tuple[Path, str]]] = {}
    for f in root.glob("ROIs*/*/S2/*/s2_*.tif"):
        m = _NAME.match(f.name)
        if not m:
            continue
        key = (m["roiset"], m["roi"], int(m["patch"]))
        groups.setdefault(key, {})[int(m["t"])] = (f, m["date"])
    if not groups:
        raise FileNotFoundError(f"no SEN12MS-CR-TS S2 patches under {root} (expected ROIs*/<roi>/S2/<t>/s2_*.tif)")
    out = []
    for (rs, roi, p), byt in sorted(groups.items()):
        ts = sorted(byt)
        patch = Sen12Patch(rs, roi, p, tuple(byt[t][0] for t in ts), tuple(byt[t][1] for t in ts))
        if split == "all" or patch.split == split:
            out.append(patch)
    return out


def brightness_cloud_mask(refl: np.ndarray) -> np.ndarray:
    """(C, H, W) reflectance (12 bands) → bool cloud mask: bright and white in the visible, bright
    in SWIR1. A conservative stand-in for s2cloudless, so the reader works with no extra model."""
    vis = refl[[1, 2, 3]]
    bright = vis.mean(0) > 0.22
    white = (vis.max(0) - vis.min(0)) / (vis.mean(0) + 1e-6) < 0.35
    return bright & white & (refl[10] > 0.15)


def read_patch(patch: Sen12Patch, cloud_mask: Callable[[np.ndarray], np.ndarray] = brightness_cloud_mask) -> Series:
    """The patch's 30-date S2 series as a :class:`Series` (12 bands, reflectance, clear mask)."""
    import rasterio

    imgs, clear = [], []
    for f in patch.files:
        with rasterio.open(f) as src:
            dn = src.read().astype(np.float32)
        if dn.shape[0] == 13:
            dn = np.delete(dn, B10_INDEX, axis=0)
        if dn.shape[0] != 12:
            raise DataError(f"{f} has {dn.shape[0]} bands; SEN12MS-CR-TS S2 patches have 13")
        refl = np.where(dn > 0, np.clip(dn, 0, 10000) / 10000.0, np.nan).astype(np.float32)
        imgs.append(refl)
        clear.append(~cloud_mask(np.nan_to_num(refl)) & np.isfinite(refl).all(0))
    days = np.array([np.datetime64(d, "D").astype(float) for d in patch.dates])
    return Series(np.stack(imgs), np.stack(clear), days)


def least_cloudy_example(series: Series, n_inputs: int = 3) -> Example:
    """The data set's own protocol: the least-cloudy date is the target, the first ``n_inputs``
    other dates (in time order) are the inputs with their cloud masks."""
    cover = 1 - series.clear.reshape(len(series.days), -1).mean(1)
    target = int(np.argsort(cover, kind="stable")[0])
    inputs = [i for i in range(len(series.days)) if i != target][:n_inputs]
    truth = series.clear[target]
    return Example(series.reflectance[inputs].copy(), series.clear[inputs].copy(),
                   (series.days[inputs] - series.days[target]).astype(np.float32), series.reflectance[target].copy(),
                   truth.copy(), truth.copy(), target, -1)


def iter_examples(root: str | Path, split: str = "all", n_inputs: int = 3) -> Iterator[tuple[Sen12Patch, Example]]:
    for p in find_patches(root, split):
        yield p, least_cloudy_example(read_patch(p), n_inputs)
