"""A benchmark table: one row per architecture of a space, with its accuracy and latency, and the
lookup from a strategy's tokens to the row."""

from __future__ import annotations

import csv
import gzip
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnas import MnasError
from mnas.space.decisions import SearchSpace
from mnas.space.nb201 import Nb201Space

log = logging.getLogger(__name__)


@dataclass
class Table:
    space: SearchSpace
    archs: list[str]
    accuracy: np.ndarray  # fraction in [0, 1]
    latency: np.ndarray  # ms
    row_of: np.ndarray  # mixed-radix index of the tokens -> row, -1 where the table has no entry
    accuracy_column: str
    latency_column: str
    accuracy_scale: float  # what the table's column was divided by

    def index(self, tokens: Sequence[int]) -> int:
        i = 0
        for t, c in zip(tokens, self.space.cardinalities):
            i = i * c + int(t)
        return i

    def lookup(self, tokens: Sequence[int]) -> int | None:
        row = int(self.row_of[self.index(tokens)])
        return None if row < 0 else row

    def __len__(self) -> int:
        return len(self.archs)


def _pick(columns: list[str], given: str | None, suffix: str, what: str, path: Path) -> str:
    if given:
        if given not in columns:
            raise MnasError(f"table {path}: no column {given!r} (columns: {', '.join(columns)})")
        return given
    found = [c for c in columns if c.endswith(suffix)]
    if len(found) != 1:
        raise MnasError(f"table {path}: {len(found)} columns end in {suffix!r}; name the {what} column "
                        f"with --{what} (columns: {', '.join(columns)})")
    return found[0]


def load_table(path: str | Path, accuracy: str | None = None, latency: str | None = None,
               space: SearchSpace | None = None) -> Table:
    """A CSV (``.csv.gz``: gzip-compressed) with an ``arch`` column (NAS-Bench-201 cell strings) plus
    accuracy and latency columns. Accuracy above 1 anywhere is read as a percentage."""
    path = Path(path)
    space = space or Nb201Space()
    if not path.is_file():
        raise MnasError(f"table {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            columns, rows = list(reader.fieldnames or []), list(reader)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise MnasError(f"table {path} cannot be read: {e}") from None
    if "arch" not in columns:
        raise MnasError(f"table {path}: no 'arch' column (columns: {', '.join(columns)})")
    acc_col = _pick(columns, accuracy, "_accuracy", "accuracy", path)
    lat_col = _pick(columns, latency, "_latency_ms", "latency", path)
    archs, accs, lats, tokens = [], [], [], []
    for n, row in enumerate(rows, 2):
        try:
            a, ms = float(row[acc_col]), float(row[lat_col])
        except (TypeError, ValueError):
            raise MnasError(f"table {path}, line {n}: {acc_col}/{lat_col} must be numbers") from None
        if not (math.isfinite(a) and math.isfinite(ms) and ms > 0):
            raise MnasError(f"table {path}, line {n}: need a finite accuracy and a latency > 0")
        t = space.encode(space.parse(row["arch"]))
        archs.append(space.decode(t).canonical)
        accs.append(a)
        lats.append(ms)
        tokens.append(t)
    if not archs:
        raise MnasError(f"table {path} has no rows")
    acc = np.array(accs)
    scale = 100.0 if acc.max() > 1.0 else 1.0
    table = Table(space, archs, acc / scale, np.array(lats), np.full(space.size, -1, dtype=np.int64),
                  acc_col, lat_col, scale)
    for r, t in enumerate(tokens):
        i = table.index(t)
        if table.row_of[i] >= 0:
            raise MnasError(f"table {path}: architecture {archs[r]} appears twice")
        table.row_of[i] = r
    log.debug("table %s: %d rows, accuracy %s (/%g), latency %s", path, len(table), acc_col, scale, lat_col)
    return table

