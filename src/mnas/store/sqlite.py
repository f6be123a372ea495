"""One SQLite file per experiment (``DIR/experiment.db``): the config, every trial, controller checkpoints.

Only the driver writes it (workers return results), so there is never a "database is locked" fight.
Each state change is one transaction that writes the trial row and the controller checkpoint together,
so after a kill -9 the file holds a consistent (trials, controller) pair to resume from.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnas import MnasError

SCHEMA_VERSION = 1
DB_NAME = "experiment.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    tokens TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    accuracy REAL, latency_ms REAL, reward REAL, params INTEGER, macs INTEGER,
    latency TEXT, train TEXT, error TEXT, worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL, started REAL, finished REAL, seconds REAL
);
CREATE INDEX IF NOT EXISTS trials_arch ON trials (arch);
CREATE INDEX IF NOT EXISTS trials_status ON trials (status);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, trials_told INTEGER NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS diagnostics (
    id INTEGER PRIMARY KEY, created REAL NOT NULL, trials_told INTEGER NOT NULL, data TEXT NOT NULL
);
"""


@dataclass
class TrialRecord:
    id: int
    arch: str
    tokens: list[int]
    status: str
    accuracy: float | None = None
    latency_ms: float | None = None
    reward: float | None = None
    params: int | None = None
    macs: int | None = None
    latency: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    error: str | None = None
    worker: str | None = None
    attempts: int = 1
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_JSON_COLS = ("tokens", "latency", "train")


class Store:
    def __init__(self, directory: str | Path, create: bool = True) -> None:
        self.dir = Path(directory)
        self.path = self.dir / DB_NAME
        if not create and not self.path.exists():
            raise MnasError(f"no experiment in {self.dir} ({DB_NAME} missing): run 'mnas search --out {self.dir}'")
        if self.dir.exists() and not self.dir.is_dir():
            raise MnasError(f"{self.dir} is a file, not an experiment directory: choose another --out")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
        except sqlite3.DatabaseError as e:
            self.conn.close()
            raise MnasError(f"{self.path} is not a usable experiment database ({e})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- meta (config, target latency, ...)
    def set_meta(self, key: str, value: Any, conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- trials
    def add_trial(self, arch: str, tokens: list[int] | tuple[int, ...],
                  conn: sqlite3.Connection | None = None) -> int:
        cur = (conn or self.conn).execute(
            "INSERT INTO trials (arch, tokens, status, created) VALUES (?, ?, 'running', ?)",
            (arch, json.dumps(list(tokens)), time.time()))
        return int(cur.lastrowid)

    def finish_trial(self, trial_id: int, status: str, conn: sqlite3.Connection | None = None,
                     **fields: Any) -> None:
        if status not in ("completed", "failed", "running"):
            raise ValueError(status)
        fields["status"] = status
        for col in _JSON_COLS:
            if col in fields and fields[col] is not None:
                fields[col] = json.dumps(fields[col])
        sets = ", ".join(f"{k} = ?" for k in fields)
        (conn or self.conn).execute(f"UPDATE trials SET {sets} WHERE id = ?", (*fields.values(), trial_id))

    def trials(self, status: str | None = None, columns: str = "*") -> list[TrialRecord]:
        sql = f"SELECT {columns} FROM trials" + (" WHERE status = ?" if status else "") + " ORDER BY id"
        rows = self.conn.execute(sql, (status,) if status else ()).fetchall()
        return [_record(r) for r in rows]

    def trial(self, trial_id: int) -> TrialRecord:
        row = self.conn.execute("SELECT * FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise MnasError(f"no trial {trial_id} in {self.path}")
        return _record(row)

    def counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall()
        out = {"running": 0, "completed": 0, "failed": 0}
        out.update({r[0]: r[1] for r in rows})
        out["total"] = sum(out.values())
        return out

    # -- controller checkpoints and diagnostics
    def save_checkpoint(self, state: dict[str, Any], trials_told: int, kind: str = "latest",
                        conn: sqlite3.Connection | None = None) -> None:
        """``latest`` replaces the previous latest; other kinds (e.g. ``update``) are kept as history."""
        c = conn or self.conn
        if kind == "latest":
            c.execute("DELETE FROM checkpoints WHERE kind = 'latest'")
        c.execute("INSERT INTO checkpoints (created, trials_told, kind, state) VALUES (?, ?, ?, ?)",
                  (time.time(), trials_told, kind, json.dumps(state)))

    def latest_checkpoint(self) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT state FROM checkpoints WHERE kind = 'latest' "
                                "ORDER BY id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    def add_diagnostics(self, data: dict[str, Any], trials_told: int,
                        conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).execute("INSERT INTO diagnostics (created, trials_told, data) VALUES (?, ?, ?)",
                                    (time.time(), trials_told, json.dumps(data)))

    def diagnostics(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT trials_told, data FROM diagnostics ORDER BY id").fetchall()
        return [{"trials_told": r[0], **json.loads(r[1])} for r in rows]


def _record(row: sqlite3.Row) -> TrialRecord:
    d = dict(row)
    for col in _JSON_COLS:
        if d.get(col) is not None:
            d[col] = json.loads(d[col])
    return TrialRecord(**d)
