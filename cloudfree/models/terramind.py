"""TerraMind head: a TerraMind encoder (terratorch) over the TimeGate composite + a pixel decoder.

The encoder sees the composite as its S2L2A modality (standardised with TerraMind's pre-training
statistics, in DN); a light decoder upsamples its last token map back to full resolution, fuses it
with the TimeGate features and predicts a residual correction. Pretrained weights come only from a
local file (no hub downloads); without one the encoder is randomly initialised and a warning says so.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TerraMindHead", "TERRAMIND_S2L2A_MEAN", "TERRAMIND_S2L2A_STD"]

log = logging.getLogger(__name__)

# TerraMind v1 S2L2A pre-training statistics (DN, bands B01..B12 without B10).
TERRAMIND_S2L2A_MEAN = [1390.458, 1503.317, 1718.197, 1853.910, 2199.100, 2779.975, 2987.011, 3083.234, 3132.220,
                        3162.988, 2424.884, 1857.648]
TERRAMIND_S2L2A_STD = [2106.761, 2141.107, 2038.973, 2134.138, 2085.321, 1889.926, 1820.257, 1871.918, 1753.829,
                       1797.379, 1434.261, 1334.311]
PATCH = 16
VARIANTS = ("terramind_v1_tiny", "terramind_v1_small", "terramind_v1_base", "terramind_v1_large")


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
        raise ValueError(f"{path} does not look like weights for this TerraMind variant: "
                         f"{len(usable)} of {len(own)} tensors match")
    encoder.load_state_dict(usable, strict=False)
    log.info("loaded %d/%d TerraMind tensors from %s", len(usable), len(own), path)


class TerraMindHead(nn.Module):
    """Residual reconstruction head on a TerraMind encoder."""

    def __init__(self, in_features: int, out_channels: int = 12, variant: str = "terramind_v1_tiny",
                 weights: str | None = None, freeze_encoder: bool = False, decoder_width: int = 64,
                 gamma_init: float = 0.01):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown TerraMind variant {variant!r}; choose one of {VARIANTS}")
        try:
            from terratorch.registry import BACKBONE_REGISTRY
        except ImportError as exc:  # pragma: no cover - optional extra
            raise ImportError("the TerraMind path needs terratorch: pip install 'cloudfree[terramind]'") from exc
        self.encoder = BACKBONE_REGISTRY.build(variant, modalities=["S2L2A"], pretrained=False)
        if weights:
            _load_encoder_weights(self.encoder, weights)
        else:
            log.warning("TerraMind %s is randomly initialised (no --terramind-weights given)", variant)
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
