"""The one progress bar of the CLI: a rich bar on stderr, ``update(done, total=None, **fields)``.

Every long command (search, train, lut build, bench) uses it, so they look alike and all stay quiet when
stderr is not a terminal (rich then draws nothing; the commands log a line per step instead).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

Update = Callable[..., None]


@contextmanager
def progress_bar(label: str, total: int | None = None, detail: str = "",
                 transient: bool = False) -> Iterator[Update]:
    """``detail``: a template over the fields passed to ``update`` (e.g. "loss {task.fields[loss]}");
    the task's ``description`` field is shown after the bar."""
    columns: list[Any] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if detail:
        columns.append(TextColumn(detail))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.description}")]
    console = Console(stderr=True)
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

        yield update


def _field_names(template: str) -> list[str]:
    import re

    return re.findall(r"task\.fields\[(\w+)\]", template)
