"""Models: TimeGate temporal aggregation, residual U-Net and TerraMind heads, registry, checkpoints.

The torch modules load on first use (``cloudfree.models.TimeGate`` …): the core install has no
torch and runs the default model in numpy (:mod:`cloudfree.models.pixel_numpy`)."""

from .checkpoint import CheckpointError, default_weights, load_checkpoint, read_config, save_checkpoint
from .registry import build_model, default_config, model_kind, register

__all__ = ["TimeGate", "ResidualUNet", "CloudFreeNet", "build_model", "default_config", "save_checkpoint",
           "load_checkpoint", "read_config", "CheckpointError", "default_weights", "model_kind", "register"]

_TORCH_MODULES = {"TimeGate": "timegate", "ResidualUNet": "unet", "CloudFreeNet": "network"}


def __getattr__(name: str):
    if name in _TORCH_MODULES:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH_MODULES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
