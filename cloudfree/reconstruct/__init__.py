"""Cube → one cloud-free image per period: the model over halo'd tiles, or a compositing method."""

from .composites import METHODS, composite
from .dataset import mosaic
from .periods import Period, make_periods

__all__ = ["mosaic", "composite", "METHODS", "Period", "make_periods"]
