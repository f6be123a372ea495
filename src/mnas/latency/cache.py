"""An on-disk cache of latency results (SQLite: safe with several processes writing at once)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from mnas.latency.base import LatencyResult


def default_cache_path() -> Path:
    root = os.environ.get("MNAS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mnas")
    return Path(root) / "latency.sqlite"


class LatencyCache:
    """key (see ``mnas.latency.base.cache_key``) -> LatencyResult. A directory gets ``latency.sqlite``."""

    def __init__(self, path: str | Path | None = None) -> None:
        p = Path(path) if path is not None else default_cache_path()
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / "latency.sqlite"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path = p
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, result TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: str) -> LatencyResult | None:
        with self._connect() as db:
            row = db.execute("SELECT result FROM latency WHERE key = ?", (key,)).fetchone()
        return LatencyResult.from_dict(json.loads(row[0])) if row else None

    def put(self, key: str, result: LatencyResult) -> None:
        data = result.to_dict()
        data["cached"] = False
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO latency (key, result) VALUES (?, ?)", (key, json.dumps(data)))

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
