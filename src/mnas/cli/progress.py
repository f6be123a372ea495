"""The one progress bar of the CLI: a rich bar on stderr, ``update(done, total=None, **fields)``.

Every long command (search, train, supernet, lut build, bench) uses it, so they look alike and all stay quiet
when stderr is not a terminal (rich then draws nothing). Where a command has no log lines of its own there,
``lines=SECONDS`` prints one instead: ``label done/total (elapsed, left) field value ...`` at most that often,
and once at the end; ``line_at(done, total)`` adds the steps that always get a line (a checkpoint's).
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
LineAt = Callable[[int, "float | None"], bool]  # (done, total) -> this step gets a line whatever the time
LINES_EVERY_S = 30.0  # without a terminal, a long job says where it is this often: it moves, the log stays short


@contextmanager
def progress_bar(label: str, total: int | None = None, detail: str = "", transient: bool = False,
                 lines: float | None = None, line_at: LineAt | None = None) -> Iterator[Update]:
    """``detail``: a template over the fields passed to ``update`` (e.g. "loss {task.fields[loss]}");
    the task's ``description`` field is shown after the bar. ``lines``: without a terminal, a line on
    stderr at most every ``lines`` seconds (``LINES_EVERY_S`` is the usual choice); ``line_at``: the steps
    that get one whatever the time (see ``progress_lines``)."""
    columns: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns.append(TextColumn(detail))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}")]
    console = Console(stderr=True)
    # lines where stderr is not a terminal, whatever rich's guess (FORCE_COLOR makes it draw into a file)
    say = progress_lines(label, lines, at=line_at) \
        if (lines is not None or line_at is not None) and not _isatty(sys.stderr) else None
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
                say(done, bar.tasks[0].total, **values)

        yield update


def progress_lines(label: str, every: float | None = LINES_EVERY_S, stream: TextIO | None = None,
                   clock: Callable[[], float] = time.monotonic, at: LineAt | None = None,
                   emit: Callable[[str], None] | None = None) -> Callable[..., None]:
    """``say(done, total, **fields)``: a line ``label done/total (elapsed s, about N s left) field value ...``
    on ``stream`` (stderr) when ``every`` seconds (None: never on time alone) have passed since the last one,
    when ``at(done, total)`` is true (e.g. a step that wrote a checkpoint, so that a log says what a kill
    keeps), and when ``done`` reaches ``total``; what a job without a terminal shows instead of a bar (the
    time left: the pace since the first call, extrapolated, so that a resumed job's earlier steps do not count).
    ``emit``: where a line goes instead of ``stream`` (a logger's ``info``, for a command that logs)."""
    start = clock()
    said = [start, -1]
    first: list[float] = []  # (time, done) of the first call

    def say(done: int, total: float | None, **fields: Any) -> None:
        now = clock()
        if not first:
            first[:] = [now, done]
        end = bool(total) and done >= total  # type: ignore[operator]
        due = (every is not None and now - said[0] >= every) or (at is not None and at(done, total))
        if done == said[1] or not (end or due):
            return
        said[:] = [now, done]
        spent = now - start
        pace = (now - first[0]) / (done - first[1]) if done > first[1] else None
        left = f", about {pace * (total - done):.0f} s left" if total and pace is not None and done < total else ""
        of = f"/{total:.0f}" if total is not None else ""
        values = "".join(f" {k} {v}" for k, v in fields.items())
        line = f"{label} {done}{of} ({spent:.0f} s{left}){values}"
        if emit is not None:
            emit(line)
        else:
            print(line, file=stream or sys.stderr, flush=True)

    return say


def tenths(done: int, total: float | None) -> bool:
    """A ``line_at`` for short jobs: the step that crosses each tenth of the total."""
    return bool(total) and done * 10 // total > (done - 1) * 10 // total  # type: ignore[operator]


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or odd stream: not a terminal
        return False


def _field_names(template: str) -> list[str]:
    import re

    return re.findall(r"task\.fields\[(\w+)\]", template)
