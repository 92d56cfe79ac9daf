"""Training loop: masked L1/Charbonnier + (1 − SSIM), AdamW + cosine, AMP on GPU, resumable.

Examples come from :mod:`cloudfree.evaluate.examples` (no cloud-free targets). Checkpoints are written
every ``ckpt_every`` steps as ``last.safetensors`` (model, the one checkpoint format) plus
``last.state.pt`` (optimizer, scheduler, step, RNG); a restarted run continues from them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..evaluate.examples import Example, collate
from ..evaluate.metrics import ssim_map
from ..models import build_model, default_config, load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "train", "masked_loss", "evaluate_examples", "pick_device"]


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


def pick_device(device: str | None = None) -> torch.device:
    """``cuda`` when available unless told otherwise; CPU is always a clean fallback."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available")
    return dev


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


def _state_path(out: Path) -> Path:
    return out / "last.state.pt"


def train(cfg: TrainConfig, sample: Callable[[np.random.Generator], Example | None], out_dir: str | Path, *,
          val: list[Example] | None = None, device: str | None = None, resume: bool = True,
          log: Callable[[str], None] = print, stop_after: int | None = None, init: str | Path | None = None) -> dict:
    """Train, checkpointing to ``out_dir``; returns the final metrics/info dict.

    ``sample(rng)`` draws one example (``None`` = try again). Deterministic for a seed on CPU.
    ``stop_after`` ends this call after that many steps, checkpointed, as a kill would (tests).
    ``init`` starts a new run (fine-tuning) from the weights of an existing checkpoint.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model).to(dev)
    if init is not None:
        start_from, _ = load_checkpoint(init)
        model.load_state_dict(start_from.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    t_start = time.time()

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.time_limit_s:
            p = max(p, (time.time() - t_start) / cfg.time_limit_s)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    step, history = 0, []
    last = out / "last.safetensors"
    if resume and last.exists() and _state_path(out).exists():
        loaded, _ = load_checkpoint(last)
        model.load_state_dict(loaded.state_dict())
        st = torch.load(_state_path(out), map_location="cpu", weights_only=False)
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step, history = st["step"], st["history"]
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        log(f"resumed from step {step}")
    use_amp = cfg.amp and dev.type == "cuda"
    model.train()
    t0 = time.time()
    losses: list[float] = []

    def save(info_extra: dict | None = None) -> None:
        info = {"step": step, "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
                "history": history, **(info_extra or {})}
        save_checkpoint(model, cfg.model, last, info)
        torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(), "step": step, "history": history,
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, _state_path(out))

    loader = None
    if cfg.num_workers > 0:
        loader = iter(torch.utils.data.DataLoader(_Batches(sample, cfg.batch, cfg.seed + step), batch_size=None,
                                                  num_workers=cfg.num_workers, pin_memory=dev.type == "cuda",
                                                  prefetch_factor=4, persistent_workers=True))
    first_step = step
    while step < cfg.steps and not (cfg.time_limit_s and time.time() - t_start > cfg.time_limit_s):
        if stop_after is not None and step - first_step >= stop_after:
            break
        if loader is not None:
            b = {k: v.to(dev, non_blocking=True) for k, v in next(loader).items()}
        else:
            exs: list[Example] = []
            while len(exs) < cfg.batch:
                e = sample(rng)
                if e is not None:
                    exs.append(e)
            b = _to(collate(exs), dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = model(b["x"], b["valid"], b["dt"], b["pad"])["output"]
        loss = masked_loss(pred, b["target"], b["weight"], cfg.loss, cfg.ssim_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        losses.append(loss.item())
        out_of_time = bool(cfg.time_limit_s and time.time() - t_start > cfg.time_limit_s)
        if step % cfg.val_every == 0 or step == cfg.steps or out_of_time:
            rec = {"step": step, "loss": float(np.mean(losses[-cfg.val_every:])), "gamma": model.head.gamma.item(),
                   "elapsed_s": round(time.time() - t0, 1)}
            if val:
                rec.update(evaluate_examples(model, val, dev))
            history.append(rec)
            log(json.dumps(rec))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save()
    save()
    return {"step": step, "history": history, "losses": losses, "device": str(dev)}
