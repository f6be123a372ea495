"""Column-wise reads for reports: a few columns of every trial as numpy arrays, no per-row objects.

``Store.trials()`` builds one ``TrialRecord`` per row and parses three JSON columns; a report of
10,000 trials only needs numbers and strings, so this reads exactly those columns in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mnas.store.sqlite import Store

STATUS_CODES = {"running": 0, "completed": 1, "failed": 2}


@dataclass
class TrialTable:
    """One entry per trial, ordered by id. Missing numbers are NaN; ``status`` holds STATUS_CODES."""

    id: np.ndarray
    status: np.ndarray
    accuracy: np.ndarray
    latency_ms: np.ndarray
    reward: np.ndarray
    params: np.ndarray
    macs: np.ndarray
    finished: np.ndarray
    arch: list[str]
    error: list[str | None]

    def __len__(self) -> int:
        return len(self.id)

    @property
    def completed(self) -> np.ndarray:
        """Mask of completed trials with usable accuracy and latency."""
        return (self.status == 1) & np.isfinite(self.accuracy) & np.isfinite(self.latency_ms)

    def row(self, i: int) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        def integer(x: float) -> int | None:
            return int(x) if np.isfinite(x) else None

        status = {v: k for k, v in STATUS_CODES.items()}[int(self.status[i])]
        return {"id": int(self.id[i]), "arch": self.arch[i], "status": status,
                "accuracy": num(self.accuracy[i]), "latency_ms": num(self.latency_ms[i]),
                "reward": num(self.reward[i]), "params": integer(self.params[i]),
                "macs": integer(self.macs[i]), "error": self.error[i]}


def trial_table(store: Store) -> TrialTable:
    rows = store.conn.execute(
        "SELECT id, status, accuracy, latency_ms, reward, params, macs, finished, arch, error "
        "FROM trials ORDER BY id").fetchall()
    cols = list(zip(*rows)) if rows else [()] * 10

    def floats(values: tuple) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    return TrialTable(
        id=np.array(cols[0], dtype=np.int64),
        status=np.array([STATUS_CODES.get(s, 2) for s in cols[1]], dtype=np.int8),
        accuracy=floats(cols[2]), latency_ms=floats(cols[3]), reward=floats(cols[4]),
        params=floats(cols[5]), macs=floats(cols[6]), finished=floats(cols[7]),
        arch=list(cols[8]), error=list(cols[9]))


def token_matrix(store: Store, status: str = "completed") -> np.ndarray:
    """Sampled decisions of the trials with ``status``, one row per trial (ordered by id)."""
    import json

    rows = store.conn.execute("SELECT tokens FROM trials WHERE status = ? ORDER BY id", (status,)).fetchall()
    if not rows:
        return np.zeros((0, 0), dtype=np.int64)
    lists = [json.loads(r[0]) for r in rows]
    width = max(len(t) for t in lists)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for i, t in enumerate(lists):
        out[i, :len(t)] = t
    return out
