import math

import numpy as np
import pytest
import torch

from cloudfree.evaluate import metrics


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.5, (3, 40, 48))
    return base.astype(np.float64)


def test_identical_images(img):
    m = metrics.all_metrics(img, img)
    assert m["ssim"] == pytest.approx(1.0) and m["psnr"] == math.inf and m["mse"] == 0 and m["sam"] == pytest.approx(0, abs=1e-5)


def test_known_shift(img):
    m = metrics.all_metrics(img + 0.1, img)
    assert m["mse"] == pytest.approx(0.01) and m["mae"] == pytest.approx(0.1)
    assert m["psnr"] == pytest.approx(20.0) and m["rmse"] == pytest.approx(0.1)


def test_orthogonal_spectra_sam_90():
    a = np.zeros((2, 4, 4)); a[0] = 1
    b = np.zeros((2, 4, 4)); b[1] = 1
    assert metrics.sam(a, b) == pytest.approx(90.0)
    assert metrics.sam(a, 2 * a) == pytest.approx(0.0, abs=1e-6)


def test_ssim_matches_scikit_image(img):
    from skimage.metrics import structural_similarity

    noisy = img + np.random.default_rng(1).normal(0, 0.03, img.shape)
    ref = structural_similarity(noisy, img, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=1.0)
    assert metrics.ssim(noisy, img) == pytest.approx(ref, abs=1e-6)


def test_ssim_matches_torchmetrics(img):
    tm = pytest.importorskip("torchmetrics.functional")
    noisy = img + np.random.default_rng(2).normal(0, 0.05, img.shape)
    ref = tm.structural_similarity_index_measure(torch.from_numpy(noisy)[None], torch.from_numpy(img)[None],
                                                 data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11)
    assert metrics.ssim(noisy, img) == pytest.approx(float(ref), abs=2e-3)


def test_numpy_and_torch_agree_and_mask(img):
    noisy = img + 0.02
    mask = np.zeros(img.shape[1:], bool)
    mask[10:30, 10:30] = True
    a = metrics.all_metrics(noisy, img, mask)
    b = metrics.all_metrics(torch.from_numpy(noisy).float(), torch.from_numpy(img).float(), torch.from_numpy(mask))
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5)
    bad = noisy.copy()
    bad[:, ~mask] = 5.0  # errors outside the mask must not count
    assert metrics.mse(bad, img, mask) == pytest.approx(0.0004)


def test_per_band(img):
    pred = img.copy()
    pred[1] += 0.1
    pb = metrics.per_band(pred, img, ["B02", "B03", "B04"])
    assert pb["B02"]["psnr"] == math.inf and pb["B03"]["psnr"] == pytest.approx(20.0)
