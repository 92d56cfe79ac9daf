"""cloudfree's errors: one base, four kinds, so a caller (the CLI among them) catches them once.

Each kind also derives from the built-in error it refines (``ValueError`` for bad input, ...), so
code written against the built-ins keeps working.
"""

from __future__ import annotations

__all__ = ["CloudfreeError", "InputError", "DataError", "OutputError", "ModelError",
           "CatalogError", "NoItemsFound", "AssetReadError", "OutputWriteError", "AOIError", "OutputCheckError", "CheckpointError", "StoreError", "OutputLockedError",
           "MissingExtraError"]


class CloudfreeError(Exception):
    """Anything cloudfree reports as a one-line message that says what to do."""


class InputError(CloudfreeError, ValueError):
    """The request is wrong: an option, a date, an area, a band, a catalog or collection name."""


class DataError(CloudfreeError, RuntimeError):
    """The inputs are: an unreadable asset, a catalog that answers wrongly, no items, no data."""


class OutputError(CloudfreeError, OSError):
    """The outputs cannot be written, are locked by another run, or failed their checks."""


class ModelError(CloudfreeError, ValueError):
    """The model cannot serve the request: a damaged checkpoint, bands it does not serve."""


class CatalogError(DataError):
    """The STAC API could not be reached or answered with an error."""


class NoItemsFound(DataError, LookupError):
    """A search matched no items; the message says what was searched."""


class AssetReadError(DataError):
    """An asset could not be read (corrupt, truncated, unreachable); says which and what to do."""


class OutputWriteError(OutputError):
    """The store could not be written (disk full, no permission, read-only); says where."""


class AOIError(InputError):
    """The area of interest cannot be used (malformed, empty, or spans too many UTM zones)."""


class OutputCheckError(OutputError, RuntimeError):
    """The outputs were written but are wrong; the message says what and where to look."""


class CheckpointError(ModelError):
    """The file is not a usable cloudfree checkpoint for this request."""


class StoreError(OutputError, RuntimeError):
    """A store exists but cannot be used for this request (partial from elsewhere, or mismatched)."""


class OutputLockedError(OutputError, RuntimeError):
    """Another run is writing into the same output folder."""


class MissingExtraError(InputError, ImportError):
    """The request needs an optional part of cloudfree that is not installed; names the extra."""
