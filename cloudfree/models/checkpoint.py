"""One checkpoint format for every model: safetensors weights + the JSON config in its metadata."""

from __future__ import annotations

from ..errors import CheckpointError

import json
from pathlib import Path

from safetensors import SafetensorError

from .. import extras
from .registry import build_model

__all__ = ["save_checkpoint", "load_checkpoint", "read_config", "CheckpointError", "FORMAT", "default_weights", "unet_weights", "serves"]

FORMAT = "cloudfree-checkpoint/1"


def default_weights() -> Path:
    """The shipped default: the band-aware PixelTimeGate trained on REAL series (see its model card)."""
    from importlib import resources

    return Path(str(resources.files("cloudfree") / "weights" / "default.safetensors"))


SHIPPED = {"default": "default.safetensors", "pixel_timegate": "default.safetensors",
           "unet_synthetic": "unet_synthetic.safetensors"}
"""The weights in the package, by the names the README and the model card use."""


def model_path(model):
    """``--model`` as given → a checkpoint path: a shipped name (``default``, ``unet_synthetic``,
    with or without ``.safetensors``) is the file in the package; anything else is a path,
    which must exist."""
    from importlib import resources

    from ..errors import InputError

    if model is None or not isinstance(model, (str, Path)):
        return model
    name = str(model).removesuffix(".safetensors")
    if name in SHIPPED and not Path(str(model)).exists():
        return Path(str(resources.files("cloudfree") / "weights" / SHIPPED[name]))
    if not Path(str(model)).exists():
        raise InputError(f"--model {model}: no such checkpoint; give a .safetensors path or a shipped name "
                         f"({', '.join(SHIPPED)})")
    return model


def unet_weights() -> Path:
    """The earlier TimeGate + residual U-Net (12 bands, trained on SYNTHETIC scenes; model card)."""
    from importlib import resources

    return Path(str(resources.files("cloudfree") / "weights" / "unet_synthetic.safetensors"))


def save_checkpoint(model, config: dict, path: str | Path, info: dict | None = None,
                    half: bool = False) -> Path:
    """Write weights + config (+ free-form ``info`` such as training step and metrics).

    ``half`` stores floating tensors as float16 (half the size, for shipped weights); loading
    casts them back to the model's float32.
    """
    from safetensors.torch import save_file

    from ..version import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": FORMAT, "config": json.dumps(config), "info": json.dumps(info or {}), "cloudfree_version": __version__}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    return path


def read_config(path: str | Path) -> tuple[dict, dict]:
    """(config, info) from a checkpoint without loading the weights."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cloudfree checkpoint (format={meta.get('format')!r})")
    return json.loads(meta["config"]), json.loads(meta.get("info", "{}"))


def serves(config: dict, bands) -> bool:
    """Whether a checkpoint (its config) serves the band set ``bands``: a band-aware model any
    subset of its bands, any other model exactly its bands in order."""
    bands = [str(b) for b in bands]
    if config.get("band_aware"):
        return len(bands) > 0 and set(bands) <= set(config["bands"])
    return bands == list(config["bands"])


def load_checkpoint(path: str | Path, *, bands: list[str] | tuple[str, ...] | None = None, arch: str | None = None,
                    map_location="cpu", backend: str = "auto") -> tuple[object, dict]:
    """Build the model a checkpoint describes and load its weights; check bands/arch if given.

    ``backend``: ``torch`` (an ``nn.Module``), ``numpy`` (the default architecture's numpy forward,
    :class:`~cloudfree.models.pixel_numpy.NumpyPixelTimeGate`, CPU only) or ``auto``: torch where it
    is installed, numpy otherwise (the core install)."""
    config, info = read_config(path)
    if arch is not None and config["arch"] != arch:
        raise CheckpointError(f"{path} holds a {config['arch']!r} model, not {arch!r}")
    if bands is not None and not serves(config, bands):
        raise CheckpointError(f"{path} was trained on bands {config['bands']}, but the data has {list(bands)}")
    if backend == "numpy" or (backend == "auto" and not extras.has_torch() and config["arch"] == "pixel_timegate"):
        return _numpy_model(path, config), {"config": config, **info}
    extras.require_torch(f"the {config['arch']!r} model of {path}")
    stored = config
    if config["arch"] in ("timegate_terramind", "pixel_terramind"):
        from .terramind import FROM_CHECKPOINT

        config = {**config, "terramind": {**config["terramind"], "weights": FROM_CHECKPOINT}}  # from the file
    model = build_model(config)
    state = _state(path, "torch", str(map_location))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.eval()
    return model, {"config": stored, **info}


def _state(path, framework: str, device: str = "cpu") -> dict:
    """The checkpoint's tensors (``torch`` or ``numpy``), every floating one finite."""
    import numpy as np

    try:
        if framework == "torch":
            from safetensors.torch import load_file

            state = load_file(str(path), device=device)
        else:
            from safetensors.numpy import load_file

            state = load_file(str(path))
    except Exception as exc:  # a truncated or garbled file: say which, not safetensors' internals
        raise CheckpointError(f"{path} cannot be read as safetensors ({exc}); is the file complete?") from exc
    bad = [k for k, v in state.items() if _non_finite(v, np)]
    if bad:
        raise CheckpointError(f"{path} holds NaN/inf in {', '.join(bad[:3])}: the file is corrupt (re-download or "
                              "re-train it)")
    return state


def _non_finite(v, np) -> bool:
    if hasattr(v, "is_floating_point"):
        return bool(v.is_floating_point()) and not bool(v.isfinite().all())
    return np.issubdtype(v.dtype, np.floating) and not bool(np.isfinite(v).all())


def _numpy_model(path, config: dict):
    """The default architecture in numpy, from the same file."""
    from .pixel_numpy import NumpyPixelTimeGate

    if config["arch"] != "pixel_timegate":
        extras.require_torch(f"the {config['arch']!r} model of {path}")
    state = _state(path, "numpy")
    need = {"mean", "std", "interp_gain", "score.weight", "score.bias"} | \
        {f"{n}.{i}.{p}" for n in ("date_net", "median_net") for i in (0, 2) for p in ("weight", "bias")}
    missing = sorted(need - set(state))
    if missing:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:5]}")
    return NumpyPixelTimeGate(state, config["norm"]["mean"], config["norm"]["std"], **config["pixel"])
