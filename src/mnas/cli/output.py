"""Shared output helpers: JSON to stdout, rich tables for people."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from mnas import MnasError

console = Console()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*(str(x) for x in r))
    return t


LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_logging(level: str, stream=None) -> None:
    """mnas's loggers at ``level``, to ``stream`` (default stderr)."""
    if level.lower() not in LOG_LEVELS:
        raise MnasError(f"--log-level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S",
                        force=True, stream=stream)
    logging.getLogger("mnas").setLevel(level.upper())


def deprecated_option(old: str, old_value: Any, new: str, new_value: Any) -> Any:
    """The value of a renamed option: the old name's when it was given (with a warning on stderr), else the
    new one's. Old names are read for one release."""
    if old_value is None:
        return new_value
    print(f"warning: {old} is deprecated, use {new} (read until the next release)", file=sys.stderr)
    return old_value
