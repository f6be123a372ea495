"""One SQLite file per experiment (``EXPERIMENT/experiment.db``): the config, every trial, controller checkpoints.

Two writers, each holding its own lock for its life: the search driver (trials, meta, checkpoints; workers
return results to it), one at a time under ``EXPERIMENT/experiment.lock`` (lock.py); and ``mnas retrain``, the
``retrained`` table only, under ``EXPERIMENT/retrain.lock``, so it may run beside the search (SQLite serialises
the two connections). Each state change of the search is one transaction that writes the trial row and the
controller checkpoint together, so after a kill -9 or a full disk the file holds a consistent
(trials, controller) pair to resume from. Readers open the file read-only and never change it.

Every SQLite error and every unreadable JSON value becomes a one-line ``MnasError`` naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mnas import MnasError
from mnas.store.lock import LOCK_NAME, RETRAIN_LOCK_NAME, DirectoryLock
from mnas.store.records import ExperimentMeta, Retrained, Trial, TrialStatus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: trial status 'pruned'; 3: latency beside T and re-timed (MIGRATIONS)
DB_NAME = "experiment.db"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def store_files(directory: str | Path) -> list[Path]:
    """Every file the store keeps in an experiment directory: the database, SQLite's journal files and the
    writers' locks (what no command may write over)."""
    d = Path(directory)
    db = d / DB_NAME
    return [db, *(db.with_name(db.name + s) for s in SQLITE_SIDE_FILES), d / LOCK_NAME, d / RETRAIN_LOCK_NAME]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    tokens TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'pruned')),
    accuracy REAL, latency_ms REAL, reward REAL, params INTEGER, macs INTEGER,
    latency TEXT, train TEXT, error TEXT, worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL, started REAL, finished REAL, seconds REAL,
    latency_ratio REAL, latency_abs_ms REAL, retimed TEXT, retimed_ms REAL
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

# Models trained in full after a search (mnas retrain): created on first use, so older stores gain it.
_RETRAINED = """
CREATE TABLE IF NOT EXISTS retrained (
    key TEXT PRIMARY KEY,
    label TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('trial', 'reference', 'arch')), trial_id INTEGER,
    arch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    top1 REAL, best_top1 REAL, epochs INTEGER, params INTEGER, macs INTEGER, latency_ms REAL,
    proxy_accuracy REAL, checkpoint TEXT, data TEXT, error TEXT,
    started REAL, finished REAL, seconds REAL
)"""
RETRAINED_COLUMNS = ("key", "label", "kind", "trial_id", "arch", "status", "top1", "best_top1", "epochs", "params",
                     "macs", "latency_ms", "proxy_accuracy", "checkpoint", "data", "error", "started", "finished",
                     "seconds")

_JSON_COLS = ("tokens", "latency", "train", "retimed")

# What a writer adds to a store of an older schema (each version's statements, run in one transaction with the
# new version number): stores only ever gain columns, so every older reader's query still reads them.
def _allow_pruned(c) -> tuple[str, ...]:
    """1 -> 2: the trials table rebuilt to accept status 'pruned' (SQLite cannot change a CHECK in place)."""
    old = c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'trials'").fetchone()[0]
    new = old.replace("'running', 'completed', 'failed')", "'running', 'completed', 'failed', 'pruned')")
    if new == old:  # a table this step does not know: stop here rather than fail at the first pruned trial
        raise MnasError("this experiment's trials table is not one mnas wrote: cannot add status 'pruned'; "
                        "open it with the mnas version that wrote it")
    return ("ALTER TABLE trials RENAME TO trials_v1", new, "INSERT INTO trials SELECT * FROM trials_v1",
            "DROP TABLE trials_v1", "CREATE INDEX IF NOT EXISTS trials_arch ON trials (arch)",
            "CREATE INDEX IF NOT EXISTS trials_status ON trials (status)")


# each step: SQL statements, or a function of the cursor giving them; run in one transaction per step
MIGRATIONS: dict[int, Any] = {
    2: _allow_pruned,
    3: ("ALTER TABLE trials ADD COLUMN latency_ratio REAL", "ALTER TABLE trials ADD COLUMN latency_abs_ms REAL",
        "ALTER TABLE trials ADD COLUMN retimed TEXT", "ALTER TABLE trials ADD COLUMN retimed_ms REAL"),
}


class Store:
    """``Store(dir)`` is the writer: it holds the directory's lock until ``close()`` and creates the
    experiment when ``dir`` does not exist yet or is empty (``create=False``: it must hold one already).
    ``Store(dir, readonly=True)`` is a reader: no lock, no writes (SQLite ``mode=ro``), safe beside a
    running writer and on a read-only mount."""

    def __init__(self, directory: str | Path, create: bool = True, readonly: bool = False,
                 lock_name: str = LOCK_NAME) -> None:
        self.dir = Path(directory)
        self.lock_name = lock_name
        self.path = self.dir / DB_NAME
        self._lock: DirectoryLock | None = None
        if self.dir.exists() and not self.dir.is_dir():
            raise MnasError(f"{self.dir} is a file, not an experiment directory: choose another experiment directory")
        if readonly or not create:
            self._require_db()
        if readonly:
            self._connect_readonly()
        else:
            self._open_writer()

    def _open_writer(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = DirectoryLock(self.dir, self.lock_name)
        new = not self.path.exists()
        try:
            if new:
                self._require_empty_dir()
            else:
                self._require_db()  # again, now that no other writer can change it
            with self._sqlite_errors():
                self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except BaseException:
            self._lock.release()
            raise
        self.conn.row_factory = sqlite3.Row
        try:
            if not new:
                self._require_experiment()
                self._require_intact()
                self._migrate()
            with self._sqlite_errors():
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=NORMAL")
            if new:
                with self.transaction() as c:  # all or nothing: a half-made store would not open again
                    for statement in filter(str.strip, _SCHEMA.split(";")):
                        c.execute(statement)
                    self.set_meta("schema_version", SCHEMA_VERSION, c)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.conn.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- opening
    def _require_db(self) -> None:
        if not self.dir.exists():
            raise MnasError(f"no experiment in {self.dir}: the directory does not exist")
        if not self.path.exists():
            raise MnasError(f"no experiment in {self.dir} ({DB_NAME} missing): "
                            f"run 'mnas search {self.dir} --config FILE'")
        if self.path.stat().st_size == 0:
            raise MnasError(f"{self.path} is empty (0 bytes), not an experiment: move it away or choose "
                            "another directory")

    def _require_empty_dir(self) -> None:
        # only a new or empty directory becomes a new experiment: never start one over files of unknown origin
        others = sorted(set(os.listdir(self.dir)) - {LOCK_NAME})
        if others:
            raise MnasError(f"{self.dir} is not empty and holds no experiment ({DB_NAME} missing; it has "
                            f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''}): choose a new or "
                            "empty directory")

    def _connect_readonly(self) -> None:
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        try:
            conn = _open_and_read(uri)
        except sqlite3.OperationalError as e:
            if not _is(e, "SQLITE_CANTOPEN", "unable to open"):
                raise MnasError(self._explain(e)) from e
            # A read-only directory where SQLite cannot create the WAL index (-shm): no writer has the file
            # open (a writer keeps its -shm), so the file on disk is all there is to read.
            log.debug("%s: read-only directory, reading %s as immutable", self.dir, DB_NAME)
            with self._sqlite_errors():
                conn = _open_and_read(uri + "&immutable=1")
        except sqlite3.Error as e:
            raise MnasError(self._explain(e)) from e
        self.conn = conn
        try:
            self._require_experiment()
        except BaseException:
            conn.close()
            raise

    def _require_experiment(self) -> None:
        """An existing file must be an mnas experiment: never add tables to another program's database."""
        with self._sqlite_errors():
            has_meta = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
            version = self.get_meta("schema_version") if has_meta else None
        if version is None:
            raise MnasError(f"{self.path} is an SQLite database but not an mnas experiment: choose another "
                            "directory")
        if version > SCHEMA_VERSION:
            raise MnasError(f"{self.path} was written by a newer mnas (store schema {version}, this one reads "
                            f"{SCHEMA_VERSION}): upgrade mnas")

    def _migrate(self) -> None:
        """Bring a store of an older schema up to ``SCHEMA_VERSION`` (``MIGRATIONS``), each step all or nothing;
        the version is read inside the transaction, so two writers (search and retrain) never both add."""
        while True:
            with self.transaction() as c:
                version = int(self.get_meta("schema_version"))
                if version >= SCHEMA_VERSION:
                    return
                step = MIGRATIONS.get(version + 1, ())
                for statement in step(c) if callable(step) else step:
                    c.execute(statement)
                self.set_meta("schema_version", version + 1, c)
            log.info("%s: store schema %d -> %d", self.path, version, version + 1)

    def columns(self, table: str = "trials") -> set[str]:
        """The columns ``table`` has (a store of an older schema opened read-only lacks the newer ones)."""
        return {r[1] for r in self._rows(f"PRAGMA table_info({table})")}

    def _require_intact(self) -> None:
        """The writer checks every page before it adds to the file (~50 ms for 10,000 trials)."""
        problems = [r[0] for r in self._rows("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise MnasError(f"{self.path} is not a usable experiment database (damaged: {problems[0]}): restore "
                            "it from a backup")

    # -- errors
    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise MnasError(self._explain(e)) from e

    def _explain(self, e: sqlite3.Error) -> str:
        if _is(e, "SQLITE_FULL", "disk is full"):
            return (f"disk full while writing {self.path}: every finished trial is saved; free some space, then "
                    "continue with --resume")
        if _is(e, "SQLITE_CORRUPT", "malformed") or _is(e, "SQLITE_NOTADB", "not a database"):
            return f"{self.path} is not a usable experiment database ({e}): it is damaged or not SQLite"
        if _is(e, "SQLITE_READONLY", "readonly database"):
            return f"{self.path} cannot be written ({e})"
        return f"{self.path}: {e}"

    def _loads(self, text: str, what: str) -> Any:
        try:
            return json.loads(text)
        except (ValueError, TypeError) as e:
            raise MnasError(f"{self.path} is damaged: {what} is not valid JSON ({e})") from e

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._sqlite_errors():
            return self.conn.execute(sql, params).fetchall()

    def _write(self, conn: sqlite3.Connection | None, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._sqlite_errors():
            return (conn or self.conn).execute(sql, params)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._sqlite_errors():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
                    self.conn.execute("ROLLBACK")
                raise

    # -- meta (config, target latency, ...)
    def set_meta(self, key: str, value: Any, conn: sqlite3.Connection | None = None) -> None:
        self._write(conn, "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return self._loads(rows[0][0], f"meta {key!r}") if rows else default

    # -- trials
    def add_trial(self, arch: str, tokens: list[int] | tuple[int, ...],
                  conn: sqlite3.Connection | None = None) -> int:
        cur = self._write(conn, "INSERT INTO trials (arch, tokens, status, created) VALUES (?, ?, 'running', ?)",
                          (arch, json.dumps(list(tokens)), time.time()))
        return int(cur.lastrowid)

    def finish_trial(self, trial: Trial, conn: sqlite3.Connection | None = None) -> None:
        """Write the results of ``trial`` (an executor's record) to its row."""
        seconds = None if trial.finished is None or trial.started is None else round(trial.finished - trial.started, 3)
        self.set_trial_fields(trial.id, conn, status=trial.status, accuracy=trial.accuracy,
                              latency_ms=trial.latency_ms, reward=trial.reward, params=trial.params,
                              macs=trial.macs, latency=trial.latency, train=trial.train, error=trial.error,
                              worker=trial.worker, started=trial.started, finished=trial.finished,
                              seconds=seconds, latency_ratio=trial.latency_ratio,
                              latency_abs_ms=trial.latency_abs_ms)

    def set_trial_fields(self, trial_id: int, conn: sqlite3.Connection | None = None, **fields: Any) -> None:
        if "status" in fields:
            fields["status"] = TrialStatus(fields["status"]).value
        for col in _JSON_COLS:
            if col in fields and fields[col] is not None:
                fields[col] = json.dumps(fields[col])
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(conn, f"UPDATE trials SET {sets} WHERE id = ?", (*fields.values(), trial_id))

    def trials(self, status: TrialStatus | str | None = None) -> list[Trial]:
        if status is None:
            return self.select_trials("ORDER BY id")
        return self.select_trials("WHERE status = ? ORDER BY id", (TrialStatus(status).value,))

    def select_trials(self, clause: str, params: tuple = ()) -> list[Trial]:
        """``SELECT * FROM trials {clause}`` as records."""
        return [self._record(r) for r in self._rows(f"SELECT * FROM trials {clause}", params)]

    def trial(self, trial_id: int) -> Trial:
        found = self.select_trials("WHERE id = ?", (trial_id,))
        if not found:
            raise MnasError(f"no trial {trial_id} in {self.path}")
        return found[0]

    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT status, COUNT(*) FROM trials GROUP BY status")
        out = {s.value: 0 for s in TrialStatus}
        out.update({r[0]: r[1] for r in rows})
        out["total"] = sum(out.values())
        return out

    def _record(self, row: sqlite3.Row) -> Trial:
        d = dict(row)
        for col in _JSON_COLS:
            if d.get(col) is not None:
                d[col] = self._loads(d[col], f"trial {d['id']}'s {col}")
        return Trial(**d)

    def tokens(self, status: TrialStatus) -> list[list[int]]:
        """The sampled decisions of the trials with ``status``, ordered by id."""
        rows = self._rows("SELECT id, tokens FROM trials WHERE status = ? ORDER BY id", (TrialStatus(status).value,))
        return [self._loads(r[1], f"trial {r[0]}'s tokens") for r in rows]

    # -- controller checkpoints and diagnostics
    def save_checkpoint(self, state: dict[str, Any], trials_told: int, kind: str = "latest",
                        conn: sqlite3.Connection | None = None) -> None:
        """``latest`` replaces the previous latest; other kinds (e.g. ``update``) are kept as history."""
        if kind == "latest":
            self._write(conn, "DELETE FROM checkpoints WHERE kind = 'latest'")
        self._write(conn, "INSERT INTO checkpoints (created, trials_told, kind, state) VALUES (?, ?, ?, ?)",
                    (time.time(), trials_told, kind, json.dumps(state)))

    def latest_checkpoint(self) -> dict[str, Any] | None:
        rows = self._rows("SELECT state FROM checkpoints WHERE kind = 'latest' ORDER BY id DESC LIMIT 1")
        return self._loads(rows[0][0], "the latest checkpoint") if rows else None

    def add_diagnostics(self, data: dict[str, Any], trials_told: int,
                        conn: sqlite3.Connection | None = None) -> None:
        self._write(conn, "INSERT INTO diagnostics (created, trials_told, data) VALUES (?, ?, ?)",
                    (time.time(), trials_told, json.dumps(data)))

    def diagnostics(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT trials_told, data FROM diagnostics ORDER BY id")
        return [{"trials_told": r[0], **self._loads(r[1], "diagnostics")} for r in rows]

    # -- retrained models
    def put_retrained(self, row: dict[str, Any]) -> None:
        """Insert or replace one retrained model's row (``key`` names it: label and recipe)."""
        unknown = set(row) - set(RETRAINED_COLUMNS)
        if unknown or "key" not in row:
            raise ValueError(f"retrained row: unknown columns {sorted(unknown)} or no key")
        if "data" in row:
            row = {**row, "data": json.dumps(row["data"]) if row["data"] is not None else None}
        with self.transaction() as c:
            c.execute(_RETRAINED)
            old = c.execute("SELECT * FROM retrained WHERE key = ?", (row["key"],)).fetchone()
            merged = {**(dict(old) if old else {}), **row}
            cols = [k for k in RETRAINED_COLUMNS if k in merged]
            updates = ", ".join(f"{k} = excluded.{k}" for k in cols if k != "key")
            c.execute(f"INSERT INTO retrained ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                      f"ON CONFLICT (key) DO UPDATE SET {updates}", tuple(merged[k] for k in cols))

    def retrained(self) -> list[Retrained]:
        """Every retrained model, in the order they were first recorded; [] before any."""
        if not self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'retrained'"):
            return []
        rows = [dict(r) for r in self._rows("SELECT * FROM retrained ORDER BY rowid")]
        for r in rows:
            r["data"] = self._loads(r["data"], f"retrained {r['key']}'s data") if r["data"] else {}
        return [Retrained(**r) for r in rows]

    def meta(self) -> ExperimentMeta:
        """Everything the search recorded about itself, typed; empty or None where absent."""
        rows = self._rows(f"SELECT key, value FROM meta WHERE key IN ({', '.join('?' * len(ExperimentMeta.KEYS))})",
                          ExperimentMeta.KEYS)
        found = {k: self._loads(v, f"meta {k!r}") for k, v in rows}
        return ExperimentMeta(config=found.get("config") or {}, target_ms=found.get("target_ms"),
                              reward=found.get("reward") or {}, latency=found.get("latency") or {},
                              space=found.get("space") or {}, created=found.get("created"),
                              references=found.get("references") or [])

    def table_rows(self, select: str) -> list[sqlite3.Row]:
        """``SELECT {select}``: plain rows, for column-wise reads (query.py)."""
        return self._rows(f"SELECT {select}")


def _is(e: sqlite3.Error, name: str, message: str) -> bool:
    """Whether ``e`` is SQLite's error ``name`` (before Python 3.11 only its message tells)."""
    return getattr(e, "sqlite_errorname", "").startswith(name) or message in str(e)


def _open_and_read(uri: str) -> sqlite3.Connection:
    """Connect and read the schema: SQLite opens lazily, so a file it cannot read fails here, not later."""
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    conn.row_factory = sqlite3.Row
    return conn
