"""Output periods: which cloud-free images to make and which acquisition dates feed each one."""

from __future__ import annotations

from ..errors import InputError

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["Period", "make_periods", "check_period"]


@dataclass(frozen=True)
class Period:
    """One output image."""

    label: str
    """e.g. ``2024-05`` or ``2024-03-01_2024-10-31``; used in file names."""
    start: np.datetime64
    end: np.datetime64
    target_day: float
    """Day (since 1970-01-01) the image represents: the period centre."""
    dates: tuple[int, ...]
    """Indices into the cube's time axis of the input dates."""


def check_period(step: str | None) -> None:
    """``None``, ``"month"`` or ``"ND"`` with N ≥ 1 — checked before any work."""
    if step is None or step == "month" or (step.endswith("D") and step[:-1].isdigit() and int(step[:-1]) >= 1):
        return
    raise InputError(f"--period {step!r} must be left out (one image), 'month' or a step in days such as '16D'")


def make_periods(times: np.ndarray, start: str, end: str, step: str | None = None, context_days: int = 30,
                 max_dates: int = 12) -> list[Period]:
    """Periods over ``start..end``: one window (``step=None``), months (``"month"``) or N days (``"16D"``).

    Each period takes the ``max_dates`` acquisitions nearest its centre within the period widened by
    ``context_days`` on both sides (the same choice for every tile, so tiles never disagree).
    """
    check_period(step)
    if context_days < 0 or max_dates < 1:
        raise InputError(f"context_days must be >= 0 and max_dates >= 1, got {context_days}, {max_dates}")
    days = np.asarray(times).astype("datetime64[D]").astype(float)
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if step is None:
        edges = [(s, e)]
    elif step == "month":
        months = pd.date_range(s.to_period("M").to_timestamp(), e, freq="MS")
        edges = [(max(m, s), min(m + pd.offsets.MonthEnd(0), e)) for m in months]
    elif step.endswith("D") and step[:-1].isdigit():
        n = int(step[:-1])
        starts = pd.date_range(s, e, freq=f"{n}D")
        edges = [(a, min(a + pd.Timedelta(days=n - 1), e)) for a in starts]
    else:
        raise InputError(f"period step {step!r} must be None, 'month' or 'ND' (e.g. '16D')")
    out = []
    for a, b in edges:
        a64, b64 = np.datetime64(a.date(), "D"), np.datetime64(b.date(), "D")
        centre = (a64.astype(float) + b64.astype(float)) / 2
        lo, hi = a64.astype(float) - context_days, b64.astype(float) + context_days
        inside = np.flatnonzero((days >= lo) & (days <= hi))
        if len(inside) == 0:
            raise InputError(f"no acquisitions within {context_days} days of period {a.date()}..{b.date()}")
        nearest = inside[np.argsort(np.abs(days[inside] - centre), kind="stable")[:max_dates]]
        label = f"{a.date()}_{b.date()}" if step is None else (f"{a:%Y-%m}" if step == "month" else f"{a.date()}")
        out.append(Period(label, a64, b64, float(centre), tuple(sorted(int(i) for i in nearest))))
    return out
