"""Training data without cloud-free targets: the cube sampler and the SEN12MS-CR-TS reader."""

from .sampler import Example, Series, collate, make_example, series_from_cube

__all__ = ["Series", "Example", "make_example", "collate", "series_from_cube"]
