import numpy as np
import pytest
import torch

from cloudfree.aoi import parse_bbox
from cloudfree.cube.load import CubeSpec, open_cube
from cloudfree.cube.store import build_cube
from cloudfree.evaluate.examples import collate, make_example, series_from_cube
from cloudfree.models import default_config, load_checkpoint
from cloudfree.catalog.search import SearchRequest
from cloudfree.training.trainer import TrainConfig, train

SMALL = default_config(unet={"width": 8, "depth": 2, "gamma_init": 0.01, "max_width": 32},
                       timegate={"hidden": 16, "learned_features": 4, "time_scale": 60.0})


@pytest.fixture(scope="module")
def demo_series(stac_url, demo_bbox, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "cube.zarr"
    build_cube(stac_url, SearchRequest(parse_bbox(demo_bbox), "2024-03-01", "2024-12-31"), CubeSpec(chunk=64), out)
    return series_from_cube(open_cube(out))


def test_examples_hide_only_truly_clear_pixels(demo_series):
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(20):
        ex = make_example(demo_series, rng, crop=48, max_dates=6, augment=False)
        if ex is None:
            continue
        n += 1
        assert ex.x.shape[1:] == (12, 48, 48) and ex.x.shape[0] <= 6
        assert (ex.hidden <= ex.truth_mask).all()
        if 0 in ex.dt:  # target date in the inputs: its hidden pixels are marked invalid
            ti = int(np.flatnonzero(ex.dt == 0)[0])
            assert not (ex.valid[ti] & ex.hidden).any()
        w = ex.loss_weight
        assert (w[~ex.truth_mask] == 0).all() and (w[ex.hidden] == 1).all()
    assert n >= 10
    b = collate([e for e in (make_example(demo_series, rng, crop=32, max_dates=5) for _ in range(6)) if e][:3])
    assert b["x"].shape[0] == 3 and b["pad"].shape == b["dt"].shape


def test_training_loss_goes_down_and_resumes(demo_series, tmp_path):
    cfg = TrainConfig(steps=24, batch=4, crop=48, max_dates=6, lr=3e-3, warmup=2, ckpt_every=12, val_every=12,
                      seed=0, model=SMALL)

    def sample(rng):
        return make_example(demo_series, rng, crop=cfg.crop, max_dates=cfg.max_dates)

    full = train(cfg, sample, tmp_path / "full", device="cpu", resume=False, log=lambda s: None)
    losses = full["losses"]
    assert np.mean(losses[-6:]) < np.mean(losses[:6])
    assert full["history"][-1]["step"] == 24

    # Interrupted after 12 steps, then resumed: same final weights as the uninterrupted run.
    train(cfg, sample, tmp_path / "resumed", device="cpu", resume=False, log=lambda s: None, stop_after=12)
    res = train(cfg, sample, tmp_path / "resumed", device="cpu", resume=True, log=lambda s: None)
    assert len(res["losses"]) == 12
    a, _ = load_checkpoint(tmp_path / "full" / "last.safetensors")
    b, _ = load_checkpoint(tmp_path / "resumed" / "last.safetensors")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k


def test_cuda_request_without_gpu_is_clear():
    from cloudfree.training.trainer import pick_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"
