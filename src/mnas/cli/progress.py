"""The one progress bar of the CLI: a rich bar on stderr, ``update(done, total=None, **fields)``.

Every long command (search, train, lut build, bench) uses it, so they look alike and all stay quiet when
stderr is not a terminal (rich then draws nothing). Where a command has no log lines of its own there
(``lut build``, ``lut eval``), ``lines=SECONDS`` prints one instead: ``label done/total (elapsed, left)``
at most that often, and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

Update = Callable[..., None]
LINES_EVERY_S = 30.0  # without a terminal, a long job says where it is this often: it moves, the log stays short


@contextmanager
def progress_bar(label: str, total: int | None = None, detail: str = "",
                 transient: bool = False, lines: float | None = None) -> Iterator[Update]:
    """``detail``: a template over the fields passed to ``update`` (e.g. "loss {task.fields[loss]}");
    the task's ``description`` field is shown after the bar. ``lines``: without a terminal, a line on
    stderr at most every ``lines`` seconds (``LINES_EVERY_S`` is the usual choice)."""
    columns: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns.append(TextColumn(detail))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}")]
    console = Console(stderr=True)
    say = progress_lines(label, lines) if lines is not None and not console.is_terminal else None
    with Progress(*columns, console=console, transient=transient, disable=not console.is_terminal) as bar:
        fields = {name: "-" for name in _field_names(detail)}
        task = bar.add_task("", total=total, **fields)

        def update(done: int, total: int | None = None, description: str | None = None, **values: Any) -> None:
            kw: dict[str, Any] = dict(values)
            if total is not None:
                kw["total"] = total
            if description is not None:
                kw["description"] = description
            bar.update(task, completed=done, **kw)
            if say is not None:
                say(done, bar.tasks[0].total)

        yield update


def progress_lines(label: str, every: float = LINES_EVERY_S, stream: TextIO | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Callable[[int, float | None], None]:
    """``say(done, total)``: a line ``label done/total (elapsed s, about N s left)`` on ``stream`` (stderr)
    when ``every`` seconds have passed since the last one, and when ``done`` reaches ``total``; what a job
    without a terminal shows instead of a bar (the time left is the pace so far, extrapolated)."""
    start = clock()
    said = [start, -1]

    def say(done: int, total: float | None) -> None:
        now = clock()
        end = bool(total) and done >= total  # type: ignore[operator]
        if done == said[1] or not (end or now - said[0] >= every):
            return
        said[:] = [now, done]
        spent = now - start
        left = f", about {spent / done * (total - done):.0f} s left" if total and 0 < done < total else ""
        of = f"/{total:.0f}" if total is not None else ""
        print(f"{label} {done}{of} ({spent:.0f} s{left})", file=stream or sys.stderr, flush=True)

    return say


def _field_names(template: str) -> list[str]:
    import re

    return re.findall(r"task\.fields\[(\w+)\]", template)
