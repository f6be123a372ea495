"""Shared output helpers: JSON to stdout, rich tables for people."""

from __future__ import annotations

import json
import logging
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
