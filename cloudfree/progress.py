"""Progress display shared by the CLI commands (rich), kept out of the library functions."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # paths and links stay on one line, copyable


def printable(text: str) -> str:
    """``text`` with control characters (terminal escapes, e.g. from a catalog's item ids) shown
    as ``?``; line breaks and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in str(text))


def say(message, style: str | None = None) -> None:
    """Print ``message`` as plain text on the console: no rich markup is read from it (paths,
    collection names and errors may hold ``[...]``) and control characters are neutralised."""
    from rich.text import Text

    console.print(Text(printable(message), style=style or ""))


def said(*parts) -> None:
    """Print styled ``(text, style)`` parts and plain strings as one line, each part made printable."""
    from rich.text import Text

    console.print(Text.assemble(*[(printable(p[0]), p[1]) if isinstance(p, tuple) else printable(p) for p in parts]))


_INTERRUPTED = threading.Event()


@contextlib.contextmanager
def interrupt_guard() -> Iterator[None]:
    """Ctrl-C stops a run at the latest at its next finished region. Python raises the
    KeyboardInterrupt wherever the main thread is, and raised inside a garbage-collector callback
    (Dask's distributed registers one) it is printed and lost, so a run went on to the end: the
    signal is remembered here, every progress update raises it again, and the lost one's printed
    traceback is dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    def unraisable(info) -> None:  # the lost one is remembered: no traceback for it on the terminal
        if not (isinstance(info.exc_value, KeyboardInterrupt) and _INTERRUPTED.is_set()):
            previous_hook(info)

    previous, previous_hook = signal.signal(signal.SIGINT, handler), sys.unraisablehook
    sys.unraisablehook = unraisable
    handlers = [h for h in (*logging.getLogger().handlers, logging.lastResort) if h is not None]
    for h in handlers:
        h.addFilter(_quiet_after_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = previous_hook
        for h in handlers:
            h.removeFilter(_quiet_after_interrupt)
        _INTERRUPTED.clear()


def _quiet_after_interrupt(record) -> bool:
    """After Ctrl-C, Dask's client and asyncio report the gathers they cancel as errors with
    tracebacks; the run says "interrupted" once instead."""
    return not (_INTERRUPTED.is_set() and record.name.split(".")[0] in ("asyncio", "distributed", "tornado"))


def _raise_if_interrupted() -> None:
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def _bar(**kw) -> Progress:
    """Label, bar, done/total, elapsed and the remaining time (ETA) once a step has finished."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, **kw)


@contextlib.contextmanager
def tile_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """Yield an ``on_region(done, total)`` callback that drives a progress bar."""
    with _bar(transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            _raise_if_interrupted()
            bar.update(task, completed=done, total=total)

        yield update


class StageProgress:
    """``progress(label)`` returns an ``on_region`` callback with its own bar (one per stage)."""

    def __init__(self) -> None:
        self.bar = _bar()

    def __enter__(self) -> "StageProgress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, label: str) -> Callable[[int, int], None]:
        task = self.bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            _raise_if_interrupted()
            self.bar.update(task, completed=done, total=total)

        return update
