"""A benchmark table: one row per architecture of a space, with its accuracy and latency, and the
lookup from a strategy's tokens to the row."""

from __future__ import annotations

import csv
import gzip
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # what a strategy is told when the table has a validation accuracy (searched on; regret is scored on
    # ``accuracy``, the test accuracy); None: the strategy is told ``accuracy``
    valid_accuracy: np.ndarray | None = None
    valid_column: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # where it came from (a generated table's parameters)

    @property
    def told_accuracy(self) -> np.ndarray:
        """The accuracy a strategy searches on: validation where the table has it, else the scored one."""
        return self.accuracy if self.valid_accuracy is None else self.valid_accuracy

    @property
    def target_quantile(self) -> float | None:
        """The latency quantile of T the table was made for (generated tables), else None."""
        return self.source.get("target_quantile")

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


MAX_SPACE = 10_000_000  # the lookup array's entries (80 MB): far beyond any table one could fill

VALID_SUFFIXES = ("_valid_accuracy", "_val_accuracy", "_validation_accuracy")


def _pick(columns: list[str], given: str | None, suffix: str | tuple[str, ...], what: str, path: Path,
          exclude: tuple[str, ...] = ()) -> str:
    if given:
        if given not in columns:
            raise MnasError(f"table {path}: no column {given!r} (columns: {', '.join(columns)})")
        return given
    found = [c for c in columns if c.endswith(suffix) and not c.endswith(exclude)]
    if len(found) != 1:
        raise MnasError(f"table {path}: {len(found)} columns end in {suffix!r}; name the {what} column "
                        f"with --{what} (columns: {', '.join(columns)})")
    return found[0]


def load_table(path: str | Path, accuracy: str | None = None, latency: str | None = None,
               space: SearchSpace | None = None, valid_accuracy: str | None = None) -> Table:
    """A CSV (``.csv.gz``: gzip-compressed) with an ``arch`` column (NAS-Bench-201 cell strings) plus
    accuracy and latency columns, and optionally a validation accuracy column (``valid_accuracy``;
    default: the one column ending ``_valid_accuracy``, ``_val_accuracy`` or ``_validation_accuracy``, if
    any; "": none), which strategies are then told while regret is scored on ``accuracy`` (the test
    accuracy).
    Accuracy above 1 anywhere is read as a percentage (both accuracy columns by the same scale).
    ``mnas.search.bench.open_table`` also opens generated tables."""
    path = Path(path)
    space = space or Nb201Space()
    if space.size > MAX_SPACE:
        raise MnasError(f"space {space.name} has {space.size:,} architectures: a table covers a space of at most "
                        f"{MAX_SPACE:,} (a lookup per architecture); use a smaller space YAML")
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
    acc_col = _pick(columns, accuracy, "_accuracy", "accuracy", path, exclude=VALID_SUFFIXES)
    lat_col = _pick(columns, latency, "_latency_ms", "latency", path)
    val_col = None
    if valid_accuracy:
        val_col = _pick(columns, valid_accuracy, VALID_SUFFIXES, "valid-accuracy", path)
    elif valid_accuracy is None and sum(c.endswith(VALID_SUFFIXES) for c in columns) == 1:
        val_col = _pick(columns, None, VALID_SUFFIXES, "valid-accuracy", path)
        val_col = None if val_col == acc_col else val_col  # --accuracy named it: searched and scored on it
    if val_col == acc_col:
        raise MnasError(f"table {path}: {acc_col!r} is both the accuracy and the validation accuracy column")
    archs, accs, vals, lats, tokens = [], [], [], [], []
    for n, row in enumerate(rows, 2):
        try:
            a, ms = float(row[acc_col]), float(row[lat_col])
            v = float(row[val_col]) if val_col else a
        except (TypeError, ValueError):
            raise MnasError(f"table {path}, line {n}: {', '.join(c for c in (acc_col, val_col, lat_col) if c)} "
                            "must be numbers") from None
        if not (math.isfinite(a) and math.isfinite(v) and math.isfinite(ms) and ms > 0):
            raise MnasError(f"table {path}, line {n}: need a finite accuracy and a latency > 0")
        t = space.encode(space.parse(row["arch"]))
        archs.append(space.decode(t).canonical)
        accs.append(a)
        vals.append(v)
        lats.append(ms)
        tokens.append(t)
    if not archs:
        raise MnasError(f"table {path} has no rows")
    acc, val = np.array(accs), np.array(vals)
    scale = 100.0 if max(acc.max(), val.max()) > 1.0 else 1.0
    table = Table(space, archs, acc / scale, np.array(lats), np.full(space.size, -1, dtype=np.int64),
                  acc_col, lat_col, scale, valid_accuracy=val / scale if val_col else None,
                  valid_column=val_col, source={"path": str(path)})
    for r, t in enumerate(tokens):
        i = table.index(t)
        if table.row_of[i] >= 0:
            raise MnasError(f"table {path}: architecture {archs[r]} appears twice")
        table.row_of[i] = r
    log.debug("table %s: %d rows, accuracy %s (/%g), latency %s", path, len(table), acc_col, scale, lat_col)
    return table

