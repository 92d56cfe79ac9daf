"""Which optional parts are installed. The core install has no PyTorch: it runs the default model
in numpy on the CPU; the GPU, training and the other architectures need ``cloudfree[gpu]``."""

from __future__ import annotations

import functools

from .errors import MissingExtraError

__all__ = ["has_torch", "require_torch", "missing_torch", "TORCH_EXTRA", "TRAIN_EXTRA"]

TORCH_EXTRA = "pip install 'cloudfree[gpu]'"
TRAIN_EXTRA = "pip install 'cloudfree[train]'"


@functools.cache
def has_torch() -> bool:
    """Whether PyTorch can be imported here (asked once per process)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def require_torch(what: str, extra: str = TORCH_EXTRA) -> None:
    """A one-line :class:`MissingExtraError` naming the extra when ``what`` needs torch and it is absent."""
    if not has_torch():
        raise MissingExtraError(f"{what} needs PyTorch, which the core install leaves out: {extra} "
                                "(the default model runs on the CPU without it)")


def missing_torch(exc: BaseException) -> str | None:
    """The one-line message for an error that is torch missing (a command of the training extra
    run on the core install); None for any other error."""
    if isinstance(exc, ImportError) and (exc.name or "").split(".")[0] in ("torch", "torchvision"):
        return (f"this command needs PyTorch, which the core install leaves out: {TRAIN_EXTRA} "
                "(cloudfree run and demo with the default model run without it)")
    return None
