"""SEN12MS-CR-TS reader on a tiny tree built in the data set's published layout."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cloudfree.evaluate.sen12mscrts import find_patches, least_cloudy_example, read_patch


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(500000, 5100000, 10, 10)) as dst:
        dst.write(arr)


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    for roiset, roi in (("ROIs1868", "17"), ("ROIs1868", "119")):  # 119 is in the official test split
        for t in range(30):
            date = str(np.datetime64("2018-01-01") + np.timedelta64(12 * t, "D"))
            for patch in (0, 3):
                a = rng.integers(300, 2000, (13, 16, 16)).astype(np.uint16)
                a[10] = 9999  # B10 (cirrus, L1C only) must be dropped
                if t != 7:  # every date but 7 has a bright white cloud in one corner
                    a[:, : 4 + t % 5, :8] = 6000
                name = f"s2_{roiset}_{roi}_ImgNo_{t}_{date}_patch_{patch}.tif"
                _write(tmp_path / roiset / roi / "S2" / str(t) / name, a)
                _write(tmp_path / roiset / roi / "S1" / str(t) / name.replace("s2_", "s1_"), a[:2])
    return tmp_path


def test_reader_layout_split_bands_and_target(tree):
    patches = find_patches(tree)
    assert len(patches) == 4 and all(len(p.files) == 30 for p in patches)
    assert {p.split for p in patches} == {"train", "test"}
    assert len(find_patches(tree, "test")) == 2
    s = read_patch(patches[0])
    assert s.reflectance.shape == (30, 12, 16, 16)
    assert np.nanmax(s.reflectance) < 0.9999  # B10 gone (it held 0.9999 everywhere)
    assert s.days[1] - s.days[0] == 12
    assert s.clear[0, :2, :4].sum() == 0 and s.clear[7].all()
    ex = least_cloudy_example(s, n_inputs=3)
    assert ex.target_index == 7 and ex.x.shape == (3, 12, 16, 16)
    assert list(ex.dt) == [-84.0, -72.0, -60.0]
    assert ex.hidden.all()


def test_missing_root_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SEN12MS-CR-TS S2 patches"):
        find_patches(tmp_path)


def test_evaluate_cli_on_test_split(tree, tmp_path):
    import json

    from typer.testing import CliRunner

    from cloudfree.cli import app

    r = CliRunner().invoke(app, ["evaluate", "--sen12mscrts", str(tree), "--out", str(tmp_path), "--model", "none",
                                 "--max-dates", "4"])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert {row["target"] for row in rows} == {"ROIs1868/119/0", "ROIs1868/119/3"}  # the official test ROI only
