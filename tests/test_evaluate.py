import numpy as np
import pytest
import torch

from cloudfree.evaluate.examples import Series
from cloudfree.evaluate.protocol import evaluate_series, write_report
from cloudfree.models import build_model, default_config


@pytest.fixture(scope="module")
def series(demo_scene):
    from cloudfree.catalog.simulate import native_resolution

    refl = native_resolution(demo_scene.observed[:, :, :64, :64])
    clear = ~np.isin(demo_scene.scl[:, :64, :64], (0, 1, 3, 8, 9, 10)) & np.isfinite(refl).all(1)
    return Series(refl, clear, demo_scene.dates.astype(float))


def _targets(s):
    frac = s.clear.reshape(len(s.days), -1).mean(1)
    return [int(t) for t in np.flatnonzero(frac >= 0.4)][:4]


def test_methods_never_see_hidden_target_pixels(series):
    torch.manual_seed(0)
    model = build_model(default_config(unet={"width": 8, "depth": 2, "gamma_init": 0.5, "max_width": 32})).eval()
    for t in _targets(series)[:3]:
        res = evaluate_series(series, [t], model)
        (ex,) = res.examples
        # Poison the truth at this example's hidden pixels: predictions must not move, only the scores.
        poisoned_refl = series.reflectance.copy()
        poisoned_refl[ex.target_index][:, ex.hidden] = 7.0
        res2 = evaluate_series(Series(poisoned_refl, series.clear, series.days), [t], model)
        (ex2,) = res2.examples
        assert not (ex2.x == 7.0).any() and (ex2.target[:, ex2.hidden] == 7.0).all()
        for name in res.predictions[0]:
            np.testing.assert_allclose(res.predictions[0][name], res2.predictions[0][name], atol=1e-6, err_msg=name)
        assert res2.summary["methods"]["median"]["mae"] > 5 * res.summary["methods"]["median"]["mae"]


def test_report_files(series, tmp_path):
    res = evaluate_series(series, _targets(series), None)
    files = write_report(res, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| median |" in md and "By cloud cover" in md
    (png,) = files["pngs"]  # one grid: rows = input, each method, truth, error; columns = up to 4 targets
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    n_rows, n_cols = 1 + len(res.predictions[0]) + 2, min(4, len(res.examples))
    assert img.shape[0] / img.shape[1] > 0.8 * n_rows / (n_cols + 0.5)  # square cells at native aspect
    yellow = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 80)
    assert yellow.sum() > 50  # the hidden region's outline is drawn in the colour the caption names
    assert set(res.summary["methods"]) == {"least_cloudy", "mosaicking", "median", "interpolation"}
    covers = {r["cover_bin"] for r in res.rows}
    assert covers <= {"0-25%", "25-50%", "50-75%", "75-100%"}
