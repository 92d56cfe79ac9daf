"""Training the band-aware TerraMind refinement (``pixel_terramind``) on real series.

Same protocol as :mod:`cloudfree.training.pixel` (real clouds and SCL pasted onto truly clear
dates, random windows, date caps, band subsets, dropped targets), but on crops: the TerraMind
encoder needs spatial context. The per-pixel model inside is frozen (the shipped default), so only
the encoder, decoder and γ learn; crops come from the mirror-padded series, as inference sees its
halo'd, mirror-padded blocks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..bands import L2A_BANDS
from ..bands import CLEAR_SCL, CLOUD_SHADOW_SCL
from ..reconstruct.selfcheck import dilate_cross
from .pixel import UNUSABLE, PixelSampler, RealSeries

__all__ = ["PatchSampler", "TerraMindTrainConfig", "train_terramind", "terramind_config"]


class PatchSampler(PixelSampler):
    """Batches of pasted crops: ``(x (B,T,12,S,S), valid (B,T,S,S), dt (B,T), present (B,12),
    truth (B,12,S,S), hidden (B,S,S), aux (B,T,3,S,S))``."""

    def __init__(self, series: list[RealSeries], rng: np.random.Generator, *, batch: int = 8, size: int = 64,
                 t_max: int = 24, target_filter=None):
        super().__init__(series, rng, pairs=batch, pixels=1, t_max=t_max, target_filter=target_filter)
        self.size = size

    def _example(self):
        rng = self.rng
        for _ in range(50):
            s = self.series[rng.choice(len(self.series), p=self.p)]
            cand = [t for t in s.targets if self.target_filter(s, t)]
            if not cand:
                continue
            t = cand[rng.integers(len(cand))]
            near = [q for q in s.sources if q != t and abs(s.days[q] - s.days[t]) <= 120]
            if near:
                src = near[rng.integers(len(near))]
                return s, t, src
        raise RuntimeError("no (target, source) pair passes the filter")

    def batch(self):
        from ..models.pixel import EDGE_CAP

        rng = self.rng
        b, tm, k = self.pairs, self.t_max, self.size
        x = np.zeros((b, tm, 12, k, k), np.float32)
        valid = np.zeros((b, tm, k, k), bool)
        dt = np.zeros((b, tm), np.float32)
        present = np.zeros((b, 12), bool)
        truth = np.zeros((b, 12, k, k), np.float32)
        hidden = np.zeros((b, k, k), bool)
        aux = np.zeros((b, tm, 3, k, k), np.float32)
        aux[:, :, :2] = 1.0
        aux[:, :, 2] = EDGE_CAP
        for i in range(b):
            s, t, src = self._example()
            cloud = dilate_cross(np.isin(s.scl[src], CLOUD_SHADOW_SCL), int(rng.integers(0, 4)))
            hid = cloud & np.isin(s.scl[t], CLEAR_SCL) & np.isfinite(s.refl[t][s.present]).all(0) & \
                np.isfinite(s.refl[src][s.present]).all(0)
            idx, drop = self._dates(s, t, (4, 6, 8, 12, 16, tm))
            bands = self._bands(s.present)
            gain = rng.uniform(0.8, 1.25)
            series, scl, ctx = _pasted_patch(s, t, src, cloud, idx, drop, gain)
            n = len(idx)
            h, w = s.scl.shape[-2:]
            crop = _random_crop(rng, h, w, k)
            ser, sc = crop(series), crop(scl)
            x[i, :n] = np.nan_to_num(ser) * bands[None, :, None, None]
            valid[i, :n] = ~np.isin(sc, UNUSABLE) & np.isfinite(ser[:, bands]).all(1)
            aux[i, :n] = crop(ctx)
            dt[i, :n] = s.days[idx] - s.days[t]
            present[i] = bands
            truth[i] = np.nan_to_num(crop(s.refl[t] * gain)) * bands[:, None, None]
            hidden[i] = crop(hid)
        return x, valid, dt, present, truth, hidden, aux


def _pasted_patch(s: RealSeries, t: int, src: int, cloud: np.ndarray, idx: np.ndarray, drop: bool, gain: float):
    """``(values (T,12,H,W), SCL (T,H,W), context (T,3,H,W))`` on the input dates, the source's
    cloudy values and SCL pasted onto the target under its grown cloud, context recomputed."""
    from ..models.pixel import context_features

    series = s.refl[idx] * gain  # (T,12,H,W)
    scl = s.scl[idx].copy()
    ctx = s.ctx[idx].copy()
    if not drop:
        j = int(np.flatnonzero(idx == t)[0])
        series[j] = np.where(cloud[None], s.refl[src], s.refl[t]) * gain
        scl[j] = np.where(cloud, s.scl[src], s.scl[t])
        u = ~np.isin(scl[j], UNUSABLE) & np.isfinite(series[j][s.present]).all(0)
        ctx[j] = context_features(u[None])[0]
    return series, scl, ctx


def _random_crop(rng: np.random.Generator, h: int, w: int, k: int):
    """A function cropping (..., h, w) arrays to one random k × k window of their mirror-padded
    copy (padded by half a crop: what a halo'd block at an edge holds)."""
    py, px = max(k - h, 0) + k // 2, max(k - w, 0) + k // 2
    y0 = int(rng.integers(0, h + 2 * py - k + 1))
    x0 = int(rng.integers(0, w + 2 * px - k + 1))

    def crop(a):
        pad = [(0, 0)] * (a.ndim - 2) + [(py, py), (px, px)]
        return np.pad(a, pad, mode="symmetric")[..., y0 : y0 + k, x0 : x0 + k]
    return crop


@dataclass
class TerraMindTrainConfig:
    steps: int = 3000
    batch: int = 8
    size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-4
    variant: str = "terramind_v1_tiny"
    decoder_width: int = 32
    seed: int = 0
    max_minutes: float | None = None
    val_every: int = 100


def terramind_config(pixel_config: dict, cfg: TerraMindTrainConfig) -> dict:
    """Checkpoint config of a PixelTerraMind around a per-pixel checkpoint's config."""
    return {"arch": "pixel_terramind", "bands": list(L2A_BANDS), "band_aware": True,
            "serves": pixel_config.get("serves", "any subset of the 12 L2A bands"),
            "norm": pixel_config["norm"], "pixel": pixel_config["pixel"],
            "terramind": {"variant": cfg.variant, "weights": None, "decoder_width": cfg.decoder_width,
                          "gamma_init": 0.0, "window": cfg.size}}


def _loss(model, batch, device):
    import torch

    x, valid, dt, present, truth, hidden, aux = (torch.from_numpy(a).to(device) for a in batch)
    res = model(x, valid, dt, present=present, aux=aux)
    seen = res["coverage"][:, 0] > 0
    m = present[:, :, None, None].float() * (hidden & seen)[:, None].float()
    n = m.sum().clamp_min(1)
    l1 = ((res["output"] - truth).abs() * m).sum() / n
    mse = (((res["output"] - truth) ** 2) * m).sum() / n
    mse_est = (((res["estimate"] - truth) ** 2) * m).sum() / n
    return l1, mse, mse_est


def _psnr(mse) -> float:
    return 10 * math.log10(1 / max(float(np.mean(mse)), 1e-12))


class TerraMindTask:
    """A TerraMind encoder + decoder over a frozen per-pixel model (:func:`train_terramind`'s task)."""

    def __init__(self, config: dict, pixel, sampler: PatchSampler, val_batches: list, encoder_weights: str | None):
        self.config, self.pixel, self.sampler, self.val_batches = config, pixel, sampler, val_batches
        self.encoder_weights = encoder_weights

    def build(self, device):
        from ..models import build_model

        model = build_model({**self.config, "terramind": {**self.config["terramind"], "weights": self.encoder_weights}})
        model.pixel.load_state_dict(self.pixel.state_dict())
        return model.to(device)

    def parameters(self, model):
        return model.parameters()

    def train_mode(self, model) -> None:
        model.train()
        model.pixel.eval()

    def batch(self, rng: np.random.Generator):
        self.sampler.rng = rng
        return self.sampler.batch()

    def loss(self, model, batch, device):
        return _loss(model, batch, device)[0]

    def validate(self, model, device) -> dict:
        res = [_loss(model, b, device) for b in self.val_batches]
        return {"val_psnr": _psnr([float(r[1]) for r in res]), "val_psnr_pixel_model": _psnr([float(r[2]) for r in res]),
                "gamma": float(model.gamma.detach())}


def train_terramind(train: list[RealSeries], val: list[RealSeries], pixel_checkpoint: str | Path, out: str | Path,
                    cfg: TerraMindTrainConfig = TerraMindTrainConfig(), *, device: str = "cpu", log=print,
                    val_filter=None, train_filter=None, encoder_weights: str | None = None, resume: bool = True) -> dict:
    """Train encoder + decoder on top of the frozen per-pixel checkpoint through
    :func:`cloudfree.training.loop.fit`; keep the best by validation PSNR on hidden pixels (logged
    beside the per-pixel model's PSNR on the same pixels). Writes ``best.safetensors``,
    ``last.safetensors`` and ``log.jsonl`` to ``out``."""
    from ..models import load_checkpoint
    from .loop import LoopConfig, fit

    pixel, info = load_checkpoint(pixel_checkpoint)
    config = terramind_config(info["config"], cfg)
    sampler = PatchSampler(train, np.random.default_rng(cfg.seed), batch=cfg.batch, size=cfg.size,
                           target_filter=train_filter)
    vs = PatchSampler(val, np.random.default_rng(12345), batch=8, size=cfg.size, target_filter=val_filter)
    val_batches = [vs.batch() for _ in range(8)]
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup=100, seed=cfg.seed, amp=False,
                      half=True, time_limit_s=cfg.max_minutes * 60 if cfg.max_minutes else None, val_every=cfg.val_every)
    info = {"train": [s.name for s in train], "pixel_checkpoint": str(pixel_checkpoint), "train_config": asdict(cfg)}
    task = TerraMindTask(config, pixel, sampler, val_batches, encoder_weights)
    return fit(task, loop, out, device=device, log=log, info=info, resume=resume)
