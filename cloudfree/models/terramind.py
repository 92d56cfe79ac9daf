"""TerraMind models: a TerraMind encoder (terratorch) refining a temporal composite.

* :class:`TerraMindHead` — over the 12-band TimeGate composite (the ``timegate_terramind`` arch).
* :class:`PixelTerraMind` — band-aware, over the default per-pixel model's output
  (``pixel_terramind``): the spatial context the per-pixel model lacks, for any band subset.

The encoder sees the image as its S2L2A modality (standardised with TerraMind's pre-training
statistics); a light decoder upsamples its last token map back to full resolution and predicts a
residual correction. Pretrained weights come only from a local file (terratorch's ``ckpt_path`` for
a ``.pt``, or a safetensors file; no hub downloads); without one the encoder is randomly
initialised and a warning says so.
"""

from __future__ import annotations

from ..errors import ModelError

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TerraMindHead", "PixelTerraMind", "TERRAMIND_S2L2A_MEAN", "TERRAMIND_S2L2A_STD"]

log = logging.getLogger(__name__)

# TerraMind v1 S2L2A pre-training statistics (DN, bands B01..B12 without B10).
TERRAMIND_S2L2A_MEAN = [1390.458, 1503.317, 1718.197, 1853.910, 2199.100, 2779.975, 2987.011, 3083.234, 3132.220,
                        3162.988, 2424.884, 1857.648]
TERRAMIND_S2L2A_STD = [2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829,
                       1797.379, 1434.261, 1334.311]
PATCH = 16
FROM_CHECKPOINT = "<checkpoint>"
"""``weights`` value of a model rebuilt by :func:`cloudfree.models.load_checkpoint`."""
RESIDUAL_RADII = (4, 16)
"""Window radii (px) over which the target's observed departure from its temporal estimate is averaged."""
VARIANTS = ("terramind_v1_tiny", "terramind_v1_small", "terramind_v1_base", "terramind_v1_large")


def _build_encoder(variant: str, weights: str | None) -> nn.Module:
    """A TerraMind S2L2A encoder; ``weights``: a local file (never a hub download)."""
    if variant not in VARIANTS:
        raise ModelError(f"unknown TerraMind variant {variant!r}; choose one of {VARIANTS}")
    try:
        from terratorch.registry import BACKBONE_REGISTRY
    except ImportError as exc:  # pragma: no cover - optional extra
        raise ImportError("the TerraMind path needs terratorch: pip install 'cloudfree[terramind]'") from exc
    encoder = BACKBONE_REGISTRY.build(variant, modalities=["S2L2A"], pretrained=False)
    if weights == FROM_CHECKPOINT:  # a cloudfree checkpoint's own weights follow
        return encoder
    if weights:
        _load_encoder_weights(encoder, weights)
    else:
        log.warning("TerraMind %s is randomly initialised (no TerraMind weights given)", variant)
    return encoder


def _load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"TerraMind weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        state = state.get("model", state.get("state_dict", state)) if isinstance(state, dict) else state
    own = encoder.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):
        raise ModelError(f"{path} does not look like weights for this TerraMind variant: "
                         f"{len(usable)} of {len(own)} tensors match")
    encoder.load_state_dict(usable, strict=False)
    log.info("loaded %d/%d TerraMind tensors from %s", len(usable), len(own), path)


class TerraMindHead(nn.Module):
    """Residual reconstruction head on a TerraMind encoder."""

    def __init__(self, in_features: int, out_channels: int = 12, variant: str = "terramind_v1_tiny",
                 weights: str | None = None, freeze_encoder: bool = False, decoder_width: int = 64,
                 gamma_init: float = 0.01):
        super().__init__()
        self.encoder = _build_encoder(variant, weights)
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        dim = self.encoder.state_dict()["encoder.0.norm1.weight"].shape[0]
        self.register_buffer("mean", torch.tensor(TERRAMIND_S2L2A_MEAN).view(1, -1, 1, 1) / 10000.0)
        self.register_buffer("std", torch.tensor(TERRAMIND_S2L2A_STD).view(1, -1, 1, 1) / 10000.0)
        ups, c = [], dim
        for _ in range(4):  # 16x upsampling in four 2x steps
            ups += [nn.ConvTranspose2d(c, decoder_width, 2, stride=2), nn.GroupNorm(8, decoder_width), nn.SiLU()]
            c = decoder_width
        self.upsample = nn.Sequential(*ups)
        self.fuse = nn.Sequential(
            nn.Conv2d(decoder_width + in_features, decoder_width, 3, padding=1), nn.GroupNorm(8, decoder_width), nn.SiLU(),
            nn.Conv2d(decoder_width, out_channels, 1),
        )
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def forward(self, composite: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """composite: (B,12,H,W) reflectance; z: (B,in_features,H,W) normalised features."""
        h, w = composite.shape[-2:]
        ph, pw = (-h) % PATCH, (-w) % PATCH
        x = (composite - self.mean) / self.std
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            z_p = F.pad(z, (0, pw, 0, ph), mode="replicate")
        else:
            z_p = z
        tokens = self.encoder({"S2L2A": x})[-1]  # (B, N, D)
        gh, gw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)
        up = self.upsample(fmap)
        corr = self.fuse(torch.cat([up, z_p], dim=1))[..., :h, :w]
        return composite + self.gamma * corr


class PixelTerraMind(nn.Module):
    """Band-aware spatial refinement of the per-pixel model (arch ``pixel_terramind``).

    The frozen :class:`~cloudfree.models.pixel.PixelTimeGate` makes the per-pixel estimate; a
    TerraMind encoder sees it (absent bands at TerraMind's mean, i.e. 0 after standardisation) in
    windows of ``window`` pixels (attention stays local, so training crops and inference patches
    look alike), and a decoder predicts a correction from the tokens, the estimate, the band
    presence and where the target was observed. Pixels the per-pixel model passed through (the
    target's own clear observation) stay unchanged. Same call as the per-pixel model.
    """

    band_aware = True

    def __init__(self, mean: list[float], std: list[float], pixel: dict, variant: str = "terramind_v1_tiny",
                 weights: str | None = None, decoder_width: int = 32, gamma_init: float = 0.0, window: int = 64):
        super().__init__()
        from ..bands import L2A_BANDS
        from .pixel import PixelTimeGate

        if window % PATCH:
            raise ModelError(f"window must be a multiple of {PATCH}")
        self.pixel = PixelTimeGate(mean, std, **pixel)
        for p in self.pixel.parameters():
            p.requires_grad_(False)
        self.window = window
        self.receptive_field = window
        self.encoder = _build_encoder(variant, weights)
        dim = self.encoder.state_dict()["encoder.0.norm1.weight"].shape[0]
        self.register_buffer("tm_mean", torch.tensor(TERRAMIND_S2L2A_MEAN) / 10000.0)
        self.register_buffer("tm_std", torch.tensor(TERRAMIND_S2L2A_STD) / 10000.0)
        n = len(L2A_BANDS)
        ups, c = [], dim
        for _ in range(4):  # 16x upsampling in four 2x steps
            ups += [nn.ConvTranspose2d(c, decoder_width, 2, stride=2), nn.GroupNorm(8, decoder_width), nn.SiLU()]
            c = decoder_width
        self.upsample = nn.Sequential(*ups)
        # where the target was observed, (observation − temporal estimate) says how this date
        # departs from its series locally; averaged over windows it carries to the hidden pixels
        n_in = decoder_width + 2 * n + 2 + len(RESIDUAL_RADII) * (n + 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(n_in, decoder_width, 3, padding=1), nn.GroupNorm(8, decoder_width), nn.SiLU(),
            nn.Conv2d(decoder_width, n, 1),
        )
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init) if gamma_init else 1.0))

    @property
    def pass_through(self) -> bool:
        return self.pixel.pass_through

    @pass_through.setter
    def pass_through(self, value: bool) -> None:
        self.pixel.pass_through = value

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B,12,H,W) standardised, H and W multiples of ``window`` → (B,D,H/16,W/16)."""
        b, c, h, w = x.shape
        k = self.window
        win = x.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, k, k)
        tok = self.encoder({"S2L2A": win})[-1]  # (B*nw, (k/16)^2, D)
        g = k // PATCH
        d = tok.shape[-1]
        tok = tok.reshape(b, h // k, w // k, g, g, d).permute(0, 5, 1, 3, 2, 4)
        return tok.reshape(b, d, (h // k) * g, (w // k) * g)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, dt: torch.Tensor | None = None, pad: torch.Tensor | None = None,
                bands=None, present: torch.Tensor | None = None, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        from ..bands import L2A_BANDS
        from .pixel import N_SLOTS

        b, t, c, h, w = x.shape
        idx = None
        if present is None:  # x holds ``bands`` in that order: put them in the 12 slots
            idx = self.pixel.slots(bands if bands is not None else L2A_BANDS).to(x.device)
            xs = torch.full((b, t, N_SLOTS, h, w), float("nan"), device=x.device, dtype=torch.float32)
            xs[:, :, idx] = x.float()
            present = torch.zeros(b, N_SLOTS, device=x.device)
            present[:, idx] = 1.0
            x = xs
        pres = present.float()
        with torch.no_grad():
            base = self.pixel(x, valid, dt, pad, present=pres, aux=aux)
        est, cov, kept = base["output"].float(), base["coverage"].float(), base["kept"].float()
        p4 = pres[:, :, None, None]
        tstd = self.tm_std.view(1, -1, 1, 1)
        s = ((est - self.tm_mean.view(1, -1, 1, 1)) / tstd) * p4 * cov
        resid = (est - base["temporal"].float()) / tstd * kept * p4
        local = []
        for r in RESIDUAL_RADII:
            num = F.avg_pool2d(resid, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
            den = F.avg_pool2d(kept, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
            local += [num / den.clamp_min(1e-3), den]
        k = self.window
        ph, pw = (-h) % k, (-w) % k
        sp = F.pad(s, (0, pw, 0, ph), mode="replicate") if (ph or pw) else s
        fmap = self._tokens(sp)
        up = self.upsample(fmap)[..., :h, :w]
        z = torch.cat([up, s, p4.expand(-1, -1, h, w), cov, kept, *local], 1)
        corr = self.fuse(z) * self.tm_std.view(1, -1, 1, 1) * self.gamma
        out = torch.where((kept > 0) | (cov == 0), est, est + corr) * p4
        if idx is not None:
            out = out[:, idx]
        return {"output": out, "weights": base["weights"], "coverage": cov, "kept": kept, "estimate": est}
