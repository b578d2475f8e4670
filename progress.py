"""One progress-bar style for every long job (rich, on stderr)."""
from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def make_progress(with_loss: bool = True) -> Progress:
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn()]
    if with_loss:
        cols.append(TextColumn("loss {task.fields[loss]:.4f}"))
    return Progress(*cols, console=Console(stderr=True), transient=False)


def track(iterable, description: str, total: int | None = None, enabled: bool = True):
    """Iterate with a progress bar on stderr."""
    if not enabled:
        yield from iterable
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as p:
        yield from p.track(iterable, total=total, description=description)
