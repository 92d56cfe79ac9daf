"""cloudfree's errors: one base, four kinds, so a caller (the CLI among them) catches them once.

Each kind also derives from the built-in error it refines (``ValueError`` for bad input, ...), so
code written against the built-ins keeps working.
"""

from __future__ import annotations

__all__ = ["CloudfreeError", "InputError", "DataError", "OutputError", "ModelError"]


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
