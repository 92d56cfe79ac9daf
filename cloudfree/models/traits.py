"""What a run asks of a model before running it: its :class:`ModelTraits`, from a checkpoint's
config (weights not loaded) or from a built module, through the registry's :class:`ModelKind`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..bands import L2A_BANDS
from .checkpoint import read_config
from .registry import model_kind

__all__ = ["ModelTraits", "model_traits", "is_pixelwise", "departure_reach"]


@dataclass(frozen=True)
class ModelTraits:
    """What ``reconstruct``, ``resolve_method`` and the validation ask of a model (a checkpoint path
    or a built ``nn.Module``) before running it."""

    name: str
    """The checkpoint's path or the module's class name, for messages."""
    config: dict | None
    """The checkpoint's config (a stand-in for a bare module; None where nothing is known)."""
    pixelwise: bool
    """No spatial context in the network: no halo, any tiling gives the same pixels."""
    band_aware: bool
    """One checkpoint serves any subset of its bands."""
    departure_reach: int
    """Pixels a per-pixel model reads around a block for the target date's local departure (0: off)."""

    @property
    def context(self) -> int:
        """Pixels a per-pixel model's values depend on around each pixel: its per-date context
        features and its departure radius (0 for spatial models, whose halo is their own)."""
        if not self.pixelwise:
            return 0
        from .pixel_features import CONTEXT

        return CONTEXT + self.departure_reach


def model_traits(model) -> ModelTraits:
    """The :class:`ModelTraits` of a checkpoint path (read without loading weights) or a module."""
    if isinstance(model, (str, Path)):
        config = read_config(model)[0]
        kind = model_kind(config.get("arch"))
        dep = config.get("pixel", {}).get("departure")
        return ModelTraits(str(model), config, kind.pixelwise, kind.band_aware, int(dep["radius"]) if dep else 0)
    dep = getattr(model, "departure", None)
    band_aware = bool(getattr(model, "band_aware", False))
    n = getattr(getattr(model, "timegate", None), "in_channels", None)
    config = {"bands": list(L2A_BANDS), "band_aware": True} if band_aware else ({"bands": [f"{n} bands"]} if n else None)
    return ModelTraits(type(model).__name__, config, getattr(model, "receptive_field", None) == 0, band_aware,
                       int(dep["radius"]) if dep else 0)


def is_pixelwise(model) -> bool:
    """True for models without spatial context (no halo needed; any tiling gives the same pixels)."""
    return model_traits(model).pixelwise


def departure_reach(model) -> int:
    """Pixels a per-pixel model's tile function reads around a block for the target date's local
    departure (its ``departure`` radius; 0 when off)."""
    return model_traits(model).departure_reach
