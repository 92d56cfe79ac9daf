"""Image models (TimeGate + U-Net or TerraMind head): masked L1/Charbonnier + (1 − SSIM), trained by
the one loop (:mod:`cloudfree.training.loop`), resumable.

Examples come from :mod:`cloudfree.evaluate.examples` (no cloud-free targets). Checkpoints are written
every ``ckpt_every`` steps as ``last.safetensors`` (model, the one checkpoint format) plus
``last.state.pt`` (optimizer, scheduler, step, RNG); a restarted run continues from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..evaluate.examples import Example, collate
from ..evaluate.metrics import ssim_map
from ..models import build_model, default_config, load_checkpoint
from .loop import LoopConfig, fit, pick_device

__all__ = ["TrainConfig", "train", "masked_loss", "evaluate_examples", "pick_device", "UNetTask"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with every checkpoint)."""

    steps: int = 2000
    batch: int = 8
    crop: int = 128
    max_dates: int = 12
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    loss: str = "l1"
    """``l1`` or ``charbonnier``."""
    ssim_weight: float = 0.2
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    ckpt_every: int = 200
    val_every: int = 200
    seed: int = 0
    num_workers: int = 0
    """Processes that draw examples (0: in the training process, fully deterministic)."""
    time_limit_s: float | None = None
    """Stop after this much wall time; the cosine schedule then anneals by time, not steps."""
    model: dict = field(default_factory=default_config)


def masked_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "l1",
                ssim_weight: float = 0.2) -> torch.Tensor:
    """Pixel loss + (1 − SSIM), both weighted by ``weight`` (B,H,W): zero where truth is unknown."""
    diff = pred.float() - target.float()
    pix = diff.abs() if kind == "l1" else torch.sqrt(diff**2 + 1e-6)
    w = weight[:, None].float()
    denom = (w.sum() * pred.shape[1]).clamp_min(1.0)
    loss = (pix * w).sum() / denom
    if ssim_weight:
        s = ssim_map(pred.float(), target.float())
        loss = loss + ssim_weight * ((1 - s) * w).sum() / denom
    return loss


def _to(batch: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate_examples(model, examples: list[Example], device) -> dict[str, float]:
    """PSNR/SSIM on hidden pixels for the model and the median composite of the same inputs
    (the evaluation protocol's own scoring, so training logs and reports agree)."""
    from ..evaluate.protocol import score_examples

    model.eval()
    summary = score_examples(examples, model, methods=("median",), device=str(device)).summary["methods"]
    model.train()
    return {f"{name}_{k}": summary[name][k] for name in ("model", "median") for k in ("psnr", "ssim")}


class _Batches(torch.utils.data.IterableDataset):
    """Endless collated batches drawn by ``sample`` in DataLoader worker processes."""

    def __init__(self, sample, batch: int, seed: int):
        self.sample, self.batch, self.seed = sample, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            exs: list[Example] = []
            while len(exs) < self.batch:
                e = self.sample(rng)
                if e is not None:
                    exs.append(e)
            yield {k: torch.from_numpy(v) for k, v in collate(exs).items()}


class UNetTask:
    """The TimeGate + U-Net / TerraMind-head models on image examples (:func:`train`'s task)."""

    def __init__(self, cfg: TrainConfig, sample: Callable[[np.random.Generator], Example | None],
                 val: list[Example] | None):
        self.cfg, self.sample, self.val, self.config = cfg, sample, val, cfg.model
        self._loader = None

    def build(self, device):
        self.device = device
        return build_model(self.cfg.model).to(device)

    def parameters(self, model):
        return model.parameters()

    def train_mode(self, model) -> None:
        model.train()

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if self.cfg.num_workers > 0:  # drawn in worker processes, seeded from the loop's generator
            if self._loader is None:
                seed = int(rng.integers(1 << 31))
                self._loader = iter(torch.utils.data.DataLoader(
                    _Batches(self.sample, self.cfg.batch, seed), batch_size=None, num_workers=self.cfg.num_workers,
                    pin_memory=self.device.type == "cuda", prefetch_factor=4, persistent_workers=True))
            return {k: v.to(self.device, non_blocking=True) for k, v in next(self._loader).items()}
        exs: list[Example] = []
        while len(exs) < self.cfg.batch:
            e = self.sample(rng)
            if e is not None:
                exs.append(e)
        return _to(collate(exs), self.device)

    def loss(self, model, b, device) -> torch.Tensor:
        pred = model(b["x"], b["valid"], b["dt"], b["pad"])["output"]
        return masked_loss(pred, b["target"], b["weight"], self.cfg.loss, self.cfg.ssim_weight)

    def validate(self, model, device) -> dict:
        rec = {"gamma": model.head.gamma.item()}
        if self.val:
            rec.update(evaluate_examples(model, self.val, device))
            rec["val_psnr"] = rec["model_psnr"]
        return rec


def train(cfg: TrainConfig, sample: Callable[[np.random.Generator], Example | None], out_dir: str | Path, *,
          val: list[Example] | None = None, device: str | None = None, resume: bool = True,
          log: Callable[[str], None] = print, stop_after: int | None = None, init: str | Path | None = None) -> dict:
    """Train through :func:`cloudfree.training.loop.fit`, checkpointing to ``out_dir``.

    ``sample(rng)`` draws one example (``None`` = try again). Deterministic for a seed on CPU.
    ``stop_after`` ends this call after that many steps, checkpointed, as a kill would (tests).
    ``init`` starts a new run (fine-tuning) from the weights of an existing checkpoint.
    """
    loop = LoopConfig(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay, warmup=cfg.warmup, seed=cfg.seed,
                      time_limit_s=cfg.time_limit_s, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every, amp=cfg.amp)
    info = {"train_config": {k: v for k, v in asdict(cfg).items() if k != "model"}}
    start_from = load_checkpoint(init)[0] if init is not None else None
    return fit(UNetTask(cfg, sample, val), loop, out_dir, device=device, resume=resume, log=log, stop_after=stop_after,
               info=info, init=start_from)
