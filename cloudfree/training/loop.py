"""The one training loop: every model (per-pixel, U-Net, TerraMind) trains through :func:`fit`.

What differs between models is a small :class:`TrainTask` (build the model, draw a batch, the loss of
a batch, validate, the checkpoint's config); what is the same lives here once: AdamW, warm-up and
cosine decay (by steps, or by wall time under a time limit), gradient clipping, bf16 autocast on
CUDA, ``log.jsonl``, ``best.safetensors`` by validation PSNR, and resuming from ``last.safetensors``
+ ``last.state.pt`` (optimizer, step, history, random states) after an interruption.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["LoopConfig", "TrainTask", "fit", "pick_device"]


@dataclass
class LoopConfig:
    """How long and how fast: the loop's own settings (a task's settings are its own)."""

    steps: int = 2000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 0
    """Steps of linear warm-up before the cosine decay."""
    seed: int = 0
    time_limit_s: float | None = None
    """Stop after this much wall time; the cosine schedule then anneals by time, not steps."""
    val_every: int = 200
    ckpt_every: int | None = None
    """Write ``last.safetensors`` + state every this many steps (default: ``val_every``)."""
    amp: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    half: bool = False
    """Store the checkpoints' weights in float16."""
    clip: float = 1.0


class TrainTask(Protocol):
    """What one kind of model brings to :func:`fit`."""

    config: dict
    """The checkpoint config (what :func:`cloudfree.models.build_model` reads back)."""

    def build(self, device: torch.device) -> torch.nn.Module: ...

    def parameters(self, model: torch.nn.Module) -> Iterable[torch.nn.Parameter]:
        """The trainable parameters (all of them, or a head over a frozen part)."""

    def batch(self, rng: np.random.Generator) -> Any:
        """One training batch, drawn with the loop's ``rng`` (saved with the state, so a resumed run
        draws what an uninterrupted one would)."""

    def loss(self, model: torch.nn.Module, batch: Any, device: torch.device) -> torch.Tensor: ...

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict:
        """Metrics of the model in eval mode; ``val_psnr`` (where given) selects ``best.safetensors``."""

    def train_mode(self, model: torch.nn.Module) -> None:
        """Put the model in training mode (a frozen part may stay in eval mode)."""


def pick_device(device: str | None = None) -> torch.device:
    """``cuda`` when available unless told otherwise; CPU is always a clean fallback."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA GPU is available")
    return dev


def _schedule(cfg: LoopConfig, started: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
        p = max(0, step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.time_limit_s:
            p = max(p, (time.time() - started) / cfg.time_limit_s)
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))
    return factor


@dataclass
class _State:
    step: int = 0
    best: float = -math.inf
    history: list | None = None


def _save(task: TrainTask, model, opt, rng, st: _State, cfg: LoopConfig, out: Path, info: dict) -> None:
    from ..models import save_checkpoint

    save_checkpoint(model, task.config, out / "last.safetensors", {"step": st.step, "history": st.history, **info},
                    half=cfg.half)
    torch.save({"opt": opt.state_dict(), "step": st.step, "history": st.history, "best": st.best,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, out / "last.state.pt")


def _resume(model, opt, rng, out: Path, log) -> _State:
    from ..models import load_checkpoint

    last, state = out / "last.safetensors", out / "last.state.pt"
    if not (last.exists() and state.exists()):
        return _State(history=[])
    model.load_state_dict(load_checkpoint(last)[0].state_dict())
    st = torch.load(state, map_location="cpu", weights_only=False)
    opt.load_state_dict(st["opt"])
    rng.bit_generator.state = st["rng"]
    torch.set_rng_state(st["torch_rng"])
    log(f"resumed from step {st['step']}")
    return _State(st["step"], st.get("best", -math.inf), st["history"])


def _validate(task: TrainTask, model, dev, st: _State, losses: list, started: float, cfg: LoopConfig, out: Path,
              info: dict, log) -> None:
    from ..models import save_checkpoint

    model.eval()
    with torch.no_grad():
        metrics = task.validate(model, dev)
    rec = {"step": st.step, "loss": float(np.mean(losses[-cfg.val_every:])) if losses else float("nan"),
           "seconds": round(time.time() - started, 1), **metrics}
    st.history.append(rec)
    with (out / "log.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")
    log(json.dumps(rec))
    if rec.get("val_psnr", -math.inf) > st.best:
        st.best = rec["val_psnr"]
        save_checkpoint(model, task.config, out / "best.safetensors", {**info, **rec}, half=cfg.half)
    task.train_mode(model)


def fit(task: TrainTask, cfg: LoopConfig, out_dir: str | Path, *, device: str | None = None, resume: bool = True,
        log: Callable[[str], None] = print, stop_after: int | None = None, info: dict | None = None,
        init: torch.nn.Module | None = None) -> dict:
    """Train ``task``'s model, checkpointing to ``out_dir``; returns ``step``, ``history``,
    ``losses``, ``best_val_psnr`` and ``device``.

    Deterministic for a seed on the CPU, an interrupted run included (``resume``). ``stop_after``
    ends this call after that many steps, checkpointed, as a kill would (tests). ``init`` starts a
    new run from another model's weights (fine-tuning). ``info`` goes into every checkpoint.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = task.build(dev)
    if init is not None:
        model.load_state_dict(init.state_dict())
    params = [p for p in task.parameters(model) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    started = time.time()
    st = _resume(model, opt, rng, out, log) if resume else _State(history=[])
    schedule, info, losses, first = _schedule(cfg, started), dict(info or {}), [], st.step
    use_amp, every = cfg.amp and dev.type == "cuda", cfg.ckpt_every or cfg.val_every
    task.train_mode(model)
    while st.step < cfg.steps and not (stop_after is not None and st.step - first >= stop_after):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * schedule(st.step)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = task.loss(model, task.batch(rng), dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        st.step += 1
        losses.append(loss.item())
        out_of_time = bool(cfg.time_limit_s and time.time() - started > cfg.time_limit_s)
        if st.step % cfg.val_every == 0 or st.step == cfg.steps or out_of_time:
            _validate(task, model, dev, st, losses, started, cfg, out, info, log)
        if st.step % every == 0 or st.step == cfg.steps:
            _save(task, model, opt, rng, st, cfg, out, info)
        if out_of_time:
            break
    _save(task, model, opt, rng, st, cfg, out, info)
    return {"step": st.step, "steps": st.step, "history": st.history, "losses": losses, "best_val_psnr": st.best,
            "device": str(dev), "seconds": time.time() - started}
