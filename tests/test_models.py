import numpy as np
import pytest
import torch

from cloudfree.models import (CheckpointError, TimeGate, build_model, default_config, load_checkpoint,
                              save_checkpoint)

SMALL = {"unet": {"width": 8, "depth": 2, "gamma_init": 0.01, "max_width": 32},
         "timegate": {"hidden": 16, "learned_features": 4, "time_scale": 60.0}}


def small_model(seed=0, arch="timegate_unet"):
    torch.manual_seed(seed)
    cfg = default_config(arch, **SMALL)
    return build_model(cfg), cfg


@pytest.mark.parametrize("t", [1, 3, 10])
def test_shapes_and_dtypes(t):
    model, _ = small_model()
    x = torch.rand(2, t, 12, 20, 24)
    valid = torch.rand(2, t, 20, 24) > 0.3
    out = model(x, valid, torch.arange(t, dtype=torch.float32).expand(2, t) * 10)
    assert out["output"].shape == (2, 12, 20, 24) and out["output"].dtype == torch.float32
    assert out["weights"].shape == (2, t, 20, 24)
    assert out["coverage"].shape == (2, 1, 20, 24)
    w = out["weights"]
    any_valid = valid.any(1)
    assert torch.allclose(w.sum(1)[any_valid], torch.ones(()), atol=1e-5)


def test_masked_and_padded_dates_get_exactly_zero_weight():
    tg = TimeGate(12, hidden=16, learned_features=4)
    x = torch.rand(1, 5, 12, 8, 8)
    valid = torch.ones(1, 5, 8, 8, dtype=torch.bool)
    valid[0, 1] = False  # cloudy date
    valid[0, 2, :4] = False  # partly cloudy
    pad = torch.tensor([[False, False, False, True, True]])
    out = tg(x, valid, torch.zeros(1, 5), pad)
    assert (out.weights[0, 1] == 0).all()
    assert (out.weights[0, 2, :4] == 0).all() and (out.weights[0, 2, 4:] > 0).all()
    assert (out.weights[0, 3:] == 0).all()
    # Padding must not change anything: same result as the unpadded series.
    out3 = tg(x[:, :3], valid[:, :3], torch.zeros(1, 3))
    assert torch.allclose(out.composite, out3.composite, atol=1e-6)
    # Garbage in masked dates never leaks into the composite.
    x2 = x.clone()
    x2[0, 1] = 100.0
    x2[0, 3:] = -50.0
    assert torch.allclose(tg(x2, valid, torch.zeros(1, 5), pad).composite, out.composite, atol=1e-6)


def test_pixel_without_valid_date_is_reported():
    model, _ = small_model()
    x = torch.rand(1, 3, 12, 16, 16)
    valid = torch.ones(1, 3, 16, 16, dtype=torch.bool)
    valid[0, :, 5, 7] = False
    out = model(x, valid, torch.zeros(1, 3))
    assert out["coverage"][0, 0, 5, 7] == 0 and out["coverage"].sum() == 16 * 16 - 1
    assert (out["weights"][0, :, 5, 7] == 0).all()
    assert torch.isfinite(out["output"]).all()


def test_gamma_is_trained_and_clear_series_reconstructs_itself():
    from cloudfree.training.trainer import masked_loss

    model, _ = small_model(1)
    g0 = float(model.head.gamma)
    rng = np.random.default_rng(0)
    base = torch.from_numpy(rng.uniform(0.02, 0.4, (4, 1, 12, 32, 32)).astype(np.float32))
    x = base + 0.05 * torch.randn(4, 5, 12, 32, 32)  # each date differs: the target (dt=0) must win
    target = x[:, 2]
    valid = torch.ones(4, 5, 32, 32, dtype=torch.bool)
    dt = torch.tensor([-20.0, -10.0, 0.0, 10.0, 20.0]).expand(4, 5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    weight = torch.ones(4, 32, 32)
    before = (model(x, valid, dt)["output"] - target).abs().mean().item()
    for _ in range(60):
        loss = masked_loss(model(x, valid, dt)["output"], target, weight, ssim_weight=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (model(x, valid, dt)["output"] - target).abs().mean().item()
    assert float(model.head.gamma) != g0
    assert after < 0.5 * before and after < 0.015


def test_checkpoint_roundtrip_identical(tmp_path):
    model, cfg = small_model(3)
    model.eval()
    p = save_checkpoint(model, cfg, tmp_path / "m.safetensors", {"step": 7})
    loaded, info = load_checkpoint(p)
    assert info["step"] == 7
    x = torch.rand(1, 4, 12, 20, 20)
    v = torch.rand(1, 4, 20, 20) > 0.4
    with torch.no_grad():
        assert torch.equal(model(x, v)["output"], loaded(x, v)["output"])


def test_wrong_checkpoints_are_clear_errors(tmp_path):
    model, cfg = small_model()
    p = save_checkpoint(model, cfg, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="trained on bands"):
        load_checkpoint(p, bands=["B02", "B03", "B04"])
    with pytest.raises(CheckpointError, match="not 'timegate_terramind'"):
        load_checkpoint(p, arch="timegate_terramind")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00not a safetensors file" * 10)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a cloudfree checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_shipped_default_weights_load():
    from cloudfree.pipeline import default_weights

    model, info = load_checkpoint(default_weights())
    assert info["config"]["arch"] == "pixel_timegate" and info["config"]["band_aware"] and info["step"] >= 1000
    from cloudfree.models.checkpoint import unet_weights

    unet, uinfo = load_checkpoint(unet_weights())
    assert uinfo["config"]["arch"] == "timegate_unet" and uinfo["step"] > 1000
    assert float(unet.head.gamma) > 0.02  # trained away from its 0.01 initialisation


def test_terramind_tiny_forward_backward_cpu():
    pytest.importorskip("terratorch")
    torch.manual_seed(0)
    cfg = default_config("timegate_terramind", timegate=SMALL["timegate"],
                         terramind={"variant": "terramind_v1_tiny", "weights": None, "freeze_encoder": False,
                                    "decoder_width": 16, "gamma_init": 0.01})
    model = build_model(cfg)
    x = torch.rand(1, 3, 12, 40, 36)  # not multiples of the 16 px patch
    v = torch.ones(1, 3, 40, 36, dtype=torch.bool)
    out = model(x, v, torch.zeros(1, 3))["output"]
    assert out.shape == (1, 12, 40, 36)
    out.mean().backward()
    enc_grads = [p.grad for p in model.head.encoder.parameters() if p.grad is not None]
    assert enc_grads and model.head.gamma.grad is not None


def test_terramind_weights_file_must_match(tmp_path):
    pytest.importorskip("terratorch")
    from safetensors.torch import save_file

    bad = tmp_path / "tm.safetensors"
    save_file({"unrelated.weight": torch.zeros(3)}, str(bad))
    cfg = default_config("timegate_terramind", terramind={"variant": "terramind_v1_tiny", "weights": str(bad),
                                                          "freeze_encoder": True, "decoder_width": 16, "gamma_init": 0.01})
    with pytest.raises(ValueError, match="does not look like weights"):
        build_model(cfg)
