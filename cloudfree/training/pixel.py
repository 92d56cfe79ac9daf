"""Training the band-aware PixelTimeGate on real series, without cloud-free targets.

Examples follow the real benchmark's protocol (:mod:`cloudfree.evaluate.pasted`): a truly clear
pixel of a target date gets the *real* reflectance and SCL of another date where that date is cloud
or shadow (dilated to its edges), so the network sees the clouds SCL flags and the edges and haze
it calls clear. 25 % of examples drop the target date entirely (a period centre with no
acquisition). Windows, date caps and band sets are drawn at random, so one checkpoint serves any
band subset and any series length.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..bands import DEFAULT_UNUSABLE_SCL, L2A_BANDS
from ..bands import CLEAR_SCL, CLOUD_SHADOW_SCL
from ..evaluate.pasted import clear_targets
from ..bands import dilate_cross

__all__ = ["RealSeries", "load_real_series", "synthetic_series", "PixelSampler", "PixelTrainConfig", "train_pixel", "BAND_SETS"]

UNUSABLE = DEFAULT_UNUSABLE_SCL
BAND_SETS = (
    L2A_BANDS,
    tuple(b for b in L2A_BANDS if b not in ("B01", "B09")),
    ("B05", "B06", "B07", "B8A", "B11", "B12"),
    ("B02", "B03", "B04", "B08"),
    ("B04", "B08"),
)
"""The band sets users have (all 12; 10 without B01/B09; the 6 at 20 m; the 4 at 10 m; red and NIR,
the pair many time-series services deliver for NDVI)."""


@dataclass
class RealSeries:
    name: str
    refl: np.ndarray
    """(T, 12, H, W) float32 reflectance in the 12 band slots; NaN where absent or no data."""
    scl: np.ndarray
    """(T, H, W) uint8."""
    days: np.ndarray
    """(T,) days since 1970."""
    present: np.ndarray
    """(12,) bool."""
    targets: list[int] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, refl=self.refl.astype(np.float16), scl=self.scl, days=self.days, present=self.present,
                            name=self.name)

    @classmethod
    def load(cls, path: Path) -> "RealSeries":
        z = np.load(path)
        return cls(str(z["name"]), z["refl"].astype(np.float32), z["scl"], z["days"], z["present"]).prepare()

    @property
    def gap_series(self) -> bool:
        """Whether its provider delivers flagged pixels as gaps (NaN) rather than cloudy values."""
        flagged = np.isin(self.scl, CLOUD_SHADOW_SCL)
        return bool(flagged.any()) and float(np.isnan(self.refl[:, self.present]).any(1)[flagged].mean()) > 0.95

    def prepare(self) -> "RealSeries":
        bands = [b for b, p in zip(L2A_BANDS, self.present) if p]
        sub = self.refl[:, self.present]
        self.targets = clear_targets(sub, self.scl, bands, min_clear=0.9, max_unclassified=0.05, max_haze=0.03)
        self.sources = [s for s in range(len(self.days)) if np.isin(self.scl[s], CLOUD_SHADOW_SCL).mean() > 0.02]
        from ..models.pixel import context_features

        usable = ~np.isin(self.scl, UNUSABLE) & np.isfinite(self.refl[:, self.present]).all(1)
        self.ctx = context_features(usable)  # (T, 3, H, W)
        return self


def synthetic_series(seed: int, size: int = 96, n_dates: int = 36, date_noise: float = 0.06,
                     pixel_noise: float = 0.012) -> RealSeries:
    """A SYNTHETIC scene in the real-series layout, with the date-to-date noise real clear series
    show (``docs/DATA.md``: lag-1 autocorrelation ≈ 0.5 real vs ≈ 0.98 simulated): a per-date,
    per-band gain and per-pixel noise on every observation, clouds and SCL as simulated."""
    from ..catalog.simulate import simulate_scene

    rng = np.random.default_rng(seed + 7)
    sc = simulate_scene(seed, size, n_dates, start=f"{2018 + seed % 5}-{1 + seed % 12:02d}-01",
                        cadence_days=int(rng.choice([5, 5, 10])))
    t = sc.observed.shape[0]
    gain = 1 + rng.normal(0, date_noise, (t, sc.observed.shape[1], 1, 1))
    obs = sc.observed * gain + rng.normal(0, pixel_noise, sc.observed.shape)
    obs = np.clip(obs, 0.0005, None).astype(np.float32)
    return RealSeries(f"SYNTHETIC-{seed}", obs, sc.scl.astype(np.uint8),
                      sc.dates.astype("datetime64[D]").astype(np.float64), np.ones(len(L2A_BANDS), bool)).prepare()


def load_real_series(catalog: str, collections: list[str]) -> list[RealSeries]:
    """Each collection's whole patch through the user path (``cloudfree.search`` → ``load_cube``)."""
    import cloudfree
    from cloudfree.catalog.sources import read_static_items

    items = read_static_items(catalog)
    out = []
    for c in collections:
        days = sorted(str(i.datetime)[:10] for i in items if i.collection_id == c)
        cube = cloudfree.load_cube(cloudfree.search(catalog, days[0], days[-1], collection=c), None).compute()
        bands = [str(b) for b in cube.band.values]
        t, _, h, w = cube["reflectance"].shape
        refl = np.full((t, len(L2A_BANDS), h, w), np.nan, np.float32)
        for i, b in enumerate(bands):
            refl[:, L2A_BANDS.index(b)] = cube["reflectance"].values[:, i]
        present = np.array([b in bands for b in L2A_BANDS])
        out.append(RealSeries(c, refl, cube["scl"].values.astype(np.uint8),
                              cube.time.values.astype("datetime64[D]").astype(np.float64), present).prepare())
    return out


class PixelSampler:
    """Batches of pasted pixel series: ``(x (B,T,12,1,P), valid (B,T,1,P), dt (B,T), present (B,12),
    truth (B,12,P), hidden (B,P), aux (B,T,2,1,P))`` with B pairs (target, source) of P pixels each;
    ``aux`` = the date's usable fraction over the whole patch and the distance to its nearest
    unusable pixel, recomputed for the pasted target."""

    def __init__(self, series: list[RealSeries], rng: np.random.Generator, *, pairs: int = 32, pixels: int = 128,
                 t_max: int = 40, target_filter=None, gap_share: float | None = None):
        self.series = [s for s in series if s.targets and s.sources]
        self.rng = rng
        self.pairs, self.pixels, self.t_max = pairs, pixels, t_max
        self.target_filter = target_filter or (lambda s, t: True)
        w = np.array([len(s.targets) * s.refl.shape[-1] * s.refl.shape[-2] for s in self.series], float)
        synth = np.array([s.name.startswith("SYNTHETIC") for s in self.series])
        if synth.any() and (~synth).any():  # real and SYNTHETIC examples half and half, whatever their sizes
            w = np.where(synth, 0.5 * w / w[synth].sum(), 0.5 * w / w[~synth].sum())
        gaps = np.array([s.gap_series for s in self.series])
        if gap_share is not None and gaps.any() and (~gaps).any():  # a fixed share of gap-series examples
            w = np.where(gaps, gap_share * w / w[gaps].sum(), (1 - gap_share) * w / w[~gaps].sum())
        self.p = w / w.sum()

    def _bands(self, present: np.ndarray) -> np.ndarray:
        r = self.rng.random()
        if r < 0.35:
            return present.copy()
        if r < 0.75:
            sets = [np.isin(L2A_BANDS, bs) & present for bs in BAND_SETS]
            sets = [s for s in sets if s.sum() >= 2]
            if sets:
                return sets[self.rng.integers(len(sets))]
        idx = np.flatnonzero(present)
        k = self.rng.integers(min(2, len(idx)), len(idx) + 1)
        keep = np.zeros_like(present)
        keep[self.rng.choice(idx, k, replace=False)] = True
        return keep

    def _pair(self):
        """``(series, target, source, source's grown cloud + shadow, ys, xs)``: a target date and a
        cloudy date near it, and the target's clear pixels under the source's cloud; None after
        20 tries. A source whose flagged pixels carry no values (a provider that delivers its cloud
        mask as gaps, NaN) hides the target's pixels as a gap: that is what such a series looks like."""
        rng = self.rng
        for _ in range(20):
            s = self.series[rng.choice(len(self.series), p=self.p)]
            cand = [t for t in s.targets if self.target_filter(s, t)]
            if not cand:
                continue
            t = cand[rng.integers(len(cand))]
            near = [q for q in s.sources if q != t and abs(s.days[q] - s.days[t]) <= 120]
            if not near:
                continue
            src = near[rng.integers(len(near))]
            cloud = dilate_cross(np.isin(s.scl[src], CLOUD_SHADOW_SCL), int(rng.integers(0, 4)))
            ok = cloud & np.isin(s.scl[t], CLEAR_SCL) & np.isfinite(s.refl[t][s.present]).all(0)
            ys, xs = np.nonzero(ok)
            if len(ys):
                return s, t, src, cloud, ys, xs
        return None

    def _dates(self, s: RealSeries, t: int, caps: tuple[int, ...]) -> tuple[np.ndarray, bool]:
        """``(input dates, target dropped)``: the dates within a random window of the target, a
        quarter of the time without the target, at most a random cap of the nearest."""
        rng = self.rng
        window = rng.uniform(15, 75)
        idx = np.flatnonzero(np.abs(s.days - s.days[t]) <= window)
        drop = rng.random() < 0.25
        if drop:
            idx = idx[idx != t]
        cap = int(rng.choice(list(caps)))
        if len(idx) > min(cap, self.t_max):
            order = np.argsort(np.abs(s.days[idx] - s.days[t]), kind="stable")[: min(cap, self.t_max)]
            idx = np.sort(idx[order])
        return idx, drop

    def batch(self):
        from ..models.pixel import EDGE_CAP

        rng = self.rng
        b, p, tm = self.pairs, self.pixels, self.t_max
        x = np.zeros((b, tm, 12, 1, p), np.float32)
        valid = np.zeros((b, tm, 1, p), bool)
        dt = np.zeros((b, tm), np.float32)
        present = np.zeros((b, 12), bool)
        truth = np.zeros((b, 12, p), np.float32)
        hidden = np.zeros((b, p), bool)
        aux = np.zeros((b, tm, 3, 1, p), np.float32)
        for i in range(b):
            pair = self._pair()
            if pair is None:
                continue
            s, t, src, cloud, ys, xs = pair
            pick = rng.choice(len(ys), p, replace=len(ys) < p)
            py, px = ys[pick], xs[pick]
            idx, drop = self._dates(s, t, (4, 6, 8, 12, 16, 24, tm))
            bands = self._bands(s.present)
            gain = rng.uniform(0.8, 1.25)
            series, scl, ctx = _pasted_pixels(s, t, src, cloud, idx, drop, py, px, gain)
            n = len(idx)
            aux[i, :n, :, 0] = ctx
            aux[i, n:, :2, 0] = 1.0
            aux[i, n:, 2, 0] = EDGE_CAP
            x[i, :n, :, 0] = np.nan_to_num(series) * bands[None, :, None]
            valid[i, :n, 0] = ~np.isin(scl, UNUSABLE) & np.isfinite(series[:, bands]).all(1)
            dt[i, :n] = s.days[idx] - s.days[t]
            present[i] = bands
            truth[i] = np.nan_to_num(s.refl[t][:, py, px] * gain) * bands[:, None]
            hidden[i] = True
        return x, valid, dt, present, truth, hidden, aux


def _pasted_pixels(s: RealSeries, t: int, src: int, cloud: np.ndarray, idx: np.ndarray, drop: bool, py, px,
                   gain: float):
    """``(values (T,12,P), SCL (T,P), context (T,3,P))`` of the picked pixels on the input dates,
    the source's cloudy values, SCL and recomputed context features pasted onto the target."""
    from ..models.pixel import context_features

    series = s.refl[idx][:, :, py, px] * gain  # (T,12,P)
    scl = s.scl[idx][:, py, px]
    ctx = s.ctx[idx][:, :, py, px]  # (T, 3, P)
    if not drop:
        j = int(np.flatnonzero(idx == t)[0])
        series[j] = s.refl[src][:, py, px] * gain
        scl[j] = s.scl[src][py, px]
        scl_t = s.scl[t].copy()
        scl_t[cloud] = s.scl[src][cloud]
        ref_t = np.where(cloud[None], s.refl[src], s.refl[t])[s.present]
        u = ~np.isin(scl_t, UNUSABLE) & np.isfinite(ref_t).all(0)
        ctx[j] = context_features(u[None])[0][:, py, px]
    return series, scl, ctx


DEPARTURE = {"radius": 16, "gain": 0.75, "min_fraction": 0.05}
"""The target date's departure step a trained checkpoint carries (see
:func:`cloudfree.models.pixel.apply_departure`): chosen on validation of the first real prior (held-out
clear targets of its training places, the grid in ``MODEL_CARD.md``) and kept for its successors,
so a retrained prior changes the network only."""


@dataclass
class PixelTrainConfig:
    steps: int = 3000
    pairs: int = 32
    pixels: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    learned: int = 0
    pass_z: float = 4.0
    seed: int = 0
    gap_share: float | None = None
    """Share of examples drawn from gap series (:attr:`RealSeries.gap_series`); None: by size."""
    max_minutes: float | None = None
    val_every: int = 250
    departure: dict | None = field(default_factory=lambda: dict(DEPARTURE))


def pixel_config(cfg: PixelTrainConfig) -> dict:
    """The checkpoint config of a PixelTimeGate (what :func:`cloudfree.models.build_model` reads)."""
    from ..models.network import DEFAULT_NORM

    return {"arch": "pixel_timegate", "bands": list(L2A_BANDS), "band_aware": True,
            "serves": "any subset of the 12 L2A bands (trained on all 12, 10 without B01/B09, the 6 at 20 m, "
                      "the 4 at 10 m, red and NIR, and random subsets of at least 2)",
            "norm": DEFAULT_NORM, "pixel": {"hidden": cfg.hidden, "learned": cfg.learned, "time_scale": 60.0,
                                            "pass_through": True, "pass_z": cfg.pass_z, "pass_edge": 3.0,
                                            "gamma_init": 0.0, "departure": cfg.departure}}


def _loss(model, batch, device):
    import torch

    x, valid, dt, present, truth, hidden, aux = (torch.from_numpy(a).to(device) for a in batch)
    out = model(x, valid, dt, present=present, aux=aux)["output"][:, :, 0]  # (B,12,P)
    seen = valid[:, :, 0].any(1)  # pixels with no valid date have no answer to learn
    m = present[:, :, None].float() * (hidden & seen)[:, None].float()
    err = (out - truth).abs() * m
    mse = ((out - truth) ** 2 * m).sum() / m.sum().clamp_min(1)
    return err.sum() / m.sum().clamp_min(1), mse


def _reference_psnr(batches) -> dict:
    """Median and linear interpolation on the validation batches (same pixels as the model)."""
    import warnings

    import torch

    from ..models.pixel import interp_weights

    err = {"median": [], "interpolation": []}
    for x, valid, dt, present, truth, hidden, _aux in batches:
        seen = valid[:, :, 0].any(1)
        m = present[:, :, None] & (hidden & seen)[:, None]
        xs = np.where(valid[:, :, :, :], x[:, :, :, 0], np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nan_to_num(np.nanmedian(xs, axis=1))
        w = interp_weights(torch.from_numpy(dt), torch.from_numpy(valid)).numpy()
        itp = (w * x[:, :, :, 0]).sum(1)
        for k, o in (("median", med), ("interpolation", itp)):
            err[k].append(float(((o - truth) ** 2 * m).sum() / max(m.sum(), 1)))
    return {k: 10 * math.log10(1 / max(np.mean(v), 1e-12)) for k, v in err.items()}


class PixelTask:
    """The per-pixel TimeGate on pasted pixel series of real places (:func:`train_pixel`'s task)."""

    def __init__(self, cfg: PixelTrainConfig, sampler: "PixelSampler", val_batches: list):
        self.cfg, self.sampler, self.val_batches, self.config = cfg, sampler, val_batches, pixel_config(cfg)

    def build(self, device):
        from ..models import build_model

        return build_model(self.config).to(device)

    def parameters(self, model):
        return model.parameters()

    def train_mode(self, model) -> None:
        model.train()

    def batch(self, rng: np.random.Generator):
        self.sampler.rng = rng  # the loop's generator: saved with its state
        return self.sampler.batch()

    def loss(self, model, batch, device):
        return _loss(model, batch, device)[0]

    def validate(self, model, device) -> dict:
        mses = [float(_loss(model, b, device)[1]) for b in self.val_batches]
        return {"val_psnr": 10 * math.log10(1 / max(np.mean(mses), 1e-12)),
                "interp_gain": float(model.interp_gain.detach())}


def train_pixel(train: list[RealSeries], val: list[RealSeries], out: str | Path, cfg: PixelTrainConfig = PixelTrainConfig(),
                *, device: str = "cpu", log=print, val_filter=None, train_filter=None, resume: bool = True) -> dict:
    """Train through :func:`cloudfree.training.loop.fit`, validating on a fixed set of batches every
    ``val_every`` steps and keeping the best by validation PSNR; writes ``best.safetensors``,
    ``last.safetensors`` and ``log.jsonl`` to ``out``."""
    from .loop import LoopConfig, fit

    sampler = PixelSampler(train, np.random.default_rng(cfg.seed), pairs=cfg.pairs, pixels=cfg.pixels, gap_share=cfg.gap_share,
                           target_filter=train_filter)
    vs = PixelSampler(val, np.random.default_rng(12345), pairs=64, pixels=64, target_filter=val_filter)
    val_batches = [vs.batch() for _ in range(8)]
    ref = {"step": 0, "val_reference_psnr": _reference_psnr(val_batches)}  # median and interpolation, same pixels
    log(json.dumps(ref))
    Path(out).mkdir(parents=True, exist_ok=True)
    if not (Path(out) / "log.jsonl").exists():
        (Path(out) / "log.jsonl").write_text(json.dumps(ref) + "\n")
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed, amp=False,
                      time_limit_s=cfg.max_minutes * 60 if cfg.max_minutes else None, val_every=cfg.val_every)
    info = {"train": [s.name for s in train], "val": [s.name for s in val], "train_config": asdict(cfg)}
    return fit(PixelTask(cfg, sampler, val_batches), loop, out, device=device, log=log, info=info, resume=resume)
