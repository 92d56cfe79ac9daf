"""Build any cloudfree model from a plain config dict (what checkpoints store)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from ..bands import DEFAULT_NORM, L2A_BANDS
from ..errors import ModelError

__all__ = ["build_model", "default_config", "ModelKind", "register", "model_kind"]


def default_config(arch: str = "timegate_unet", **overrides) -> dict:
    """A complete config for ``arch``; keyword overrides replace top-level sections."""
    model_kind(arch)
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


@dataclass(frozen=True)
class ModelKind:
    """What the pipeline needs to know of an architecture before building it."""

    arch: str
    build: Callable[[dict], object]
    pixelwise: bool
    """No spatial context in the network: no halo, and any tiling gives the same pixels."""
    band_aware: bool
    """One checkpoint serves any subset of its bands (absent bands are flagged, not required)."""


_REGISTRY: dict[str, ModelKind] = {}


def register(arch: str, *, pixelwise: bool, band_aware: bool):
    """Decorator: ``build(config) → nn.Module`` becomes the builder of ``arch``."""
    def deco(build: Callable[[dict], object]):
        _REGISTRY[arch] = ModelKind(arch, build, pixelwise, band_aware)
        return build
    return deco


def model_kind(arch: str | None) -> ModelKind:
    """The registered kind of ``arch`` (an error naming the registered ones otherwise)."""
    if arch not in _REGISTRY:
        raise ModelError(f"unknown architecture {arch!r}; choose one of {tuple(_REGISTRY)}")
    return _REGISTRY[arch]


def build_model(config: dict):
    """Instantiate the network a config describes (weights random until loaded)."""
    return model_kind(config.get("arch")).build(config)


@register("pixel_timegate", pixelwise=True, band_aware=True)
def _pixel_timegate(config: dict):
    from .pixel import PixelTimeGate

    return PixelTimeGate(config["norm"]["mean"], config["norm"]["std"], **config["pixel"])


@register("pixel_terramind", pixelwise=False, band_aware=True)
def _pixel_terramind(config: dict):
    from .terramind import PixelTerraMind

    return PixelTerraMind(config["norm"]["mean"], config["norm"]["std"], config["pixel"], **config["terramind"])


def _timegate_with(config: dict, head_of):
    from .network import CloudFreeNet
    from .timegate import TimeGate

    n_bands = len(config["bands"])
    tg = TimeGate(n_bands, **config["timegate"])
    return CloudFreeNet(head_of(n_bands + tg.n_features, n_bands), tg, config["norm"]["mean"], config["norm"]["std"])


@register("timegate_unet", pixelwise=False, band_aware=False)
def _timegate_unet(config: dict):
    from .unet import ResidualUNet

    return _timegate_with(config, lambda n_in, n_bands: ResidualUNet(n_in, n_bands, **config["unet"]))


@register("timegate_terramind", pixelwise=False, band_aware=False)
def _timegate_terramind(config: dict):
    from .terramind import TerraMindHead

    if len(config["bands"]) != 12:
        raise ModelError("the TerraMind S2L2A modality needs all 12 L2A bands")
    return _timegate_with(config, lambda n_in, n_bands: TerraMindHead(n_in, n_bands, **config["terramind"]))
