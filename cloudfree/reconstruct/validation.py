"""How a run validates itself (:class:`ValidationConfig`): the request type alone, light on purpose
so the command line checks a request before the validation's own modules (xarray, Dask) load;
:mod:`cloudfree.reconstruct.selfcheck` does the validating."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ValidationConfig"]


@dataclass(frozen=True)
class ValidationConfig:
    """How a run validates itself (the defaults are what ``cloudfree run`` does)."""

    enabled: bool = True
    """Measure the candidates on held-out pixels of every period (reported in the outputs)."""
    adapt: bool = True
    """Choose or blend the candidates by those measurements (``--method auto`` only)."""
    window: int = 256
    """Side in pixels of the windows the examples are taken from."""
    max_windows: int = 4
    """Windows spread over the area (each read once per period)."""
    max_examples: int = 12
    """Examples (hidden footprints) per period."""
    min_pixels: int = 300
    """Fewer hidden pixels than this in all: validation is too thin, the prior is kept."""
    dilate: int = 2
    """Footprints are grown by this many pixels (the cloud edges masks leave out)."""
    seed: int = 0
