"""Progress display shared by the CLI commands (rich), kept out of the library functions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, soft_wrap=True)  # paths and links stay on one line, copyable


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
        return lambda done, total: self.bar.update(task, completed=done, total=total)
