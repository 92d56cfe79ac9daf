"""Models: TimeGate temporal aggregation, residual U-Net and TerraMind heads, registry, checkpoints."""

from .checkpoint import CheckpointError, default_weights, load_checkpoint, read_config, save_checkpoint
from .network import CloudFreeNet
from .registry import build_model, default_config, model_kind, register
from .timegate import TimeGate
from .unet import ResidualUNet

__all__ = ["TimeGate", "ResidualUNet", "CloudFreeNet", "build_model", "default_config", "save_checkpoint",
           "load_checkpoint", "read_config", "CheckpointError", "default_weights", "model_kind", "register"]
