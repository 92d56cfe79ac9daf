"""Shared fixtures: a small SYNTHETIC demo catalog served by a real STAC API (rustac) on loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudfree.catalog.demo import DemoSpec, write_demo_catalog
from cloudfree.catalog.simulate import simulate_scene
from cloudfree.catalog.serve import serve_stac

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPEC = DemoSpec(size=120, n_dates=12, seed=7, cadence_days=10)


@pytest.fixture(scope="session")
def demo_scene():
    return simulate_scene(SPEC.seed, SPEC.size, SPEC.n_dates, SPEC.start, SPEC.cadence_days, cloudiness=0.45)


@pytest.fixture(scope="session")
def demo_items(tmp_path_factory, demo_scene) -> Path:
    return write_demo_catalog(tmp_path_factory.mktemp("catalog"), SPEC, demo_scene)


@pytest.fixture(scope="session")
def stac_url(demo_items):
    with serve_stac(demo_items) as url:
        yield url


@pytest.fixture(scope="session")
def demo_bbox() -> str:
    """A lon/lat box well inside the test catalog's footprint."""
    from pyproj import Transformer

    tr = Transformer.from_crs(SPEC.epsg, 4326, always_xy=True)
    x0, y0 = SPEC.origin
    w, s = tr.transform(x0 + 150, y0 - SPEC.size * 10 + 150)
    e, n = tr.transform(x0 + SPEC.size * 10 - 150, y0 - 150)
    return f"{w},{s},{e},{n}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"../shared/data is absent ({SHARED_DATA}); these tests use the real STAC items and cloud masks")
    return SHARED_DATA


def demo_pixel(x: float, y: float) -> tuple[int, int]:
    """(row, col) in the 10 m demo scene of a cube pixel centre."""
    x0, y0 = SPEC.origin
    return int(np.floor((y0 - y) / 10)), int(np.floor((x - x0) / 10))
