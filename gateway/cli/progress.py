"""Progress bars for long CLI work (`facegate audit export`, `facegate audit verify`, and
report generation next), shown on a terminal only.

rich.progress, because rich already comes with typer (no new dependency), draws on stderr
so that stdout stays the command's output, and knows whether that stream is a terminal:
piped, redirected or read by a script, nothing is drawn and the output is as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]
"""Told how many more units of work were done."""


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Advance]:
    """A bar of ``total`` units (None: a spinner and a count) on stderr if it is a
    terminal; yields the ``advance`` callable to hand to the work (a no-op otherwise)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield _nothing
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.advance(task, done)


def _nothing(done: int) -> None:
    return None
