"""Shared output helpers: JSON to stdout, rich tables for people."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnas import MnasError

console = Console()


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]], cut_last: bool = False) -> Table:
    """``cut_last``: the last column (an architecture string) on one line, ellipsized past ``ARCH_WIDTH``."""
    t = Table(title=title)
    for c in columns[:-1] if cut_last else columns:
        t.add_column(c, overflow="fold")
    if cut_last:
        t.add_column(columns[-1], no_wrap=True, overflow="ellipsis", max_width=ARCH_WIDTH)
    for r in rows:
        t.add_row(*(x if isinstance(x, Text) else str(x) for x in r))
    return t


# The one table of ranked trials: the end of ``mnas search``, ``mnas report``'s top and Pareto tables.
RANKED_COLUMNS = ["rank", "trial", "accuracy", "latency ms", "reward", "params M", "MACs M", "architecture"]
ARCH_WIDTH = 48  # on a terminal, architecture strings are cut here, on one line (the full ones: --json)
ARCH_HINT = "architectures cut to fit: the full strings in {json}"


def _num(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def ranked_table(title: str, items: list[dict[str, Any]], cut: bool = True, retimed: bool = False) -> Table:
    """``items``: trials as ``mnas report --json`` gives them (rank, id, accuracy, latency_ms, reward, params,
    macs, arch). With ``cut``, each architecture string stays on one line, ellipsized past ``ARCH_WIDTH``
    (a wrapped one filled a dozen lines); without, it is shown whole (piped output, where width is free).
    ``retimed``: a "re-timed ms" column (``retimed_ms``) beside the search-time latency."""
    t = Table(title=title, title_justify="left")
    columns = RANKED_COLUMNS[:4] + (["re-timed ms"] if retimed else []) + RANKED_COLUMNS[4:]
    for c in columns[:-1]:
        t.add_column(c, overflow="fold")
    t.add_column(columns[-1], no_wrap=cut, overflow="ellipsis" if cut else "fold",
                 max_width=ARCH_WIDTH if cut else None)
    for r in items:
        t.add_row(str(r.get("rank") or ""), str(r["id"]), _num(r["accuracy"], ".4f"), _num(r["latency_ms"], ".3f"),
                  *([_num(r.get("retimed_ms"), ".3f")] if retimed else []),
                  _num(r["reward"], ".4f"), _num(r["params"] and r["params"] / 1e6, ".2f"),
                  _num(r["macs"] and r["macs"] / 1e6, ".1f"), r["arch"])
    return t


def wide_console() -> Console:
    """Piped output has no width (rich would fold at 80 columns); give architecture strings room instead."""
    return console if console.is_terminal else Console(width=400)


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
