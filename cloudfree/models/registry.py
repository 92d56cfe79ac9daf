"""Build any cloudfree model from a plain config dict (what checkpoints store)."""

from __future__ import annotations

import copy

from ..bands import L2A_BANDS
from .network import DEFAULT_NORM, CloudFreeNet
from .timegate import TimeGate

__all__ = ["build_model", "default_config", "ARCHITECTURES"]

ARCHITECTURES = ("timegate_unet", "timegate_terramind", "pixel_timegate", "pixel_terramind")


def default_config(arch: str = "timegate_unet", **overrides) -> dict:
    """A complete config for ``arch``; keyword overrides replace top-level sections."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    cfg = {
        "arch": arch,
        "bands": list(L2A_BANDS),
        "norm": copy.deepcopy(DEFAULT_NORM),
        "timegate": {"hidden": 64, "learned_features": 16, "time_scale": 60.0},
        "unet": {"width": 32, "depth": 4, "gamma_init": 0.01, "max_width": 256},
        "terramind": {"variant": "terramind_v1_tiny", "weights": None, "freeze_encoder": False, "decoder_width": 64,
                      "gamma_init": 0.01},
    }
    cfg.update(overrides)
    return cfg


def build_model(config: dict):
    """Instantiate the network a config describes (weights random until loaded)."""
    arch = config.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {ARCHITECTURES}")
    if arch == "pixel_timegate":
        from .pixel import PixelTimeGate

        return PixelTimeGate(config["norm"]["mean"], config["norm"]["std"], **config["pixel"])
    if arch == "pixel_terramind":
        from .terramind import PixelTerraMind

        return PixelTerraMind(config["norm"]["mean"], config["norm"]["std"], config["pixel"], **config["terramind"])
    n_bands = len(config["bands"])
    tg = TimeGate(n_bands, **config["timegate"])
    n_in = n_bands + tg.n_features
    if arch == "timegate_unet":
        from .unet import ResidualUNet

        head = ResidualUNet(n_in, n_bands, **config["unet"])
    else:
        from .terramind import TerraMindHead

        if n_bands != 12:
            raise ValueError("the TerraMind S2L2A modality needs all 12 L2A bands")
        head = TerraMindHead(n_in, n_bands, **config["terramind"])
    return CloudFreeNet(head, tg, config["norm"]["mean"], config["norm"]["std"])
