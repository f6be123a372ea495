"""Column-wise reads for reports: a few columns of every trial as numpy arrays, no per-row objects.

``Store.trials()`` builds one ``Trial`` per row and parses three JSON columns; a report of
10,000 trials only needs numbers and strings, so this reads exactly those columns in one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mnas import MnasError
from mnas.store.records import Trial, TrialStatus
from mnas.store.sqlite import Store

STATUS_CODES = {TrialStatus.RUNNING: 0, TrialStatus.COMPLETED: 1, TrialStatus.FAILED: 2, TrialStatus.PRUNED: 3}
_STATUS_OF_CODE = {v: k for k, v in STATUS_CODES.items()}


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
    # completed with usable numbers (``_RANKABLE``: accuracy in [0, 1], latency > 0), as SQLite evaluates it
    completed: np.ndarray
    order: np.ndarray  # row indices of the completed trials in ``RANK_ORDER``, best first (SQLite's sort)
    # issue 32: LAT/T timed in the same rounds, and the figure re-timed after the search (NaN where none)
    latency_ratio: np.ndarray | None = None
    retimed_ms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.id)

    def has_status(self, status: TrialStatus) -> np.ndarray:
        return self.status == STATUS_CODES[status]

    def best_latency(self) -> np.ndarray:
        """The latency a report ranks by: re-timed where a trial was, as the search recorded it elsewhere."""
        if self.retimed_ms is None:
            return self.latency_ms
        return np.where(np.isfinite(self.retimed_ms), self.retimed_ms, self.latency_ms)

    def ranking(self) -> np.ndarray:
        """Row indices of the completed trials in ``RANK_ORDER``, best first."""
        return self.order

    def row(self, i: int) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        def integer(x: float) -> int | None:
            return int(x) if np.isfinite(x) else None

        status = _STATUS_OF_CODE[int(self.status[i])].value
        return {"id": int(self.id[i]), "arch": self.arch[i], "status": status,
                "accuracy": num(self.accuracy[i]), "latency_ms": num(self.latency_ms[i]),
                "reward": num(self.reward[i]), "params": integer(self.params[i]),
                "macs": integer(self.macs[i]), "error": self.error[i],
                "latency_ratio": None if self.latency_ratio is None else num(self.latency_ratio[i]),
                "retimed_ms": None if self.retimed_ms is None else num(self.retimed_ms[i])}


# The one ranking of an experiment's trials, best first: by reward (none: last), then accuracy, then id.
# Written once, here, in SQL: ``ranked_trials``, ``TrialTable.ranking`` (``mnas report``), ``trial_by_rank``
# (``mnas export --rank``) and ``mnas search``'s summary all take their order from SQLite.
RANK_ORDER = "reward IS NULL, reward DESC, accuracy DESC, id"
# The driver stores only checked results as completed; this keeps a store written some other way (an older
# mnas, a plugin) from ranking a NaN, infinite or out-of-range number first all the same.
_RANKABLE = "status = 'completed' AND accuracy BETWEEN 0 AND 1 AND latency_ms > 0 AND latency_ms < 1e308"


def ranked_trials(store: Store, limit: int | None = None) -> list[Trial]:
    clause = f"WHERE {_RANKABLE} ORDER BY {RANK_ORDER}"
    return store.select_trials(clause + (" LIMIT ?" if limit else ""), (limit,) if limit else ())


def best_trial(store: Store) -> Trial | None:
    best = ranked_trials(store, 1)
    return best[0] if best else None


@dataclass(frozen=True)
class RankedTrial:
    """A completed trial and its place in the ranking (1 = the highest reward)."""

    rank: int
    trial: Trial


def trial_by_rank(store: Store, rank: int) -> RankedTrial:
    """The completed trial at ``rank``, as ``mnas report`` ranks them."""
    n = len(store.table_rows(f"id FROM trials WHERE {_RANKABLE}"))
    if n == 0:
        raise MnasError(f"no completed trials in {store.dir}: nothing to export yet")
    if not 1 <= rank <= n:
        raise MnasError(f"--rank {rank} is out of range: {store.dir} has {n} completed trial(s), ranks 1..{n}")
    return RankedTrial(rank, ranked_trials(store, rank)[-1])


def trial_by_id(store: Store, trial_id: int) -> RankedTrial:
    """A completed trial by its id (as ``mnas trials`` lists it), with its rank."""
    n = store.counts().get("total", 0)
    try:
        trial = store.trial(trial_id)
    except MnasError:
        raise MnasError(f"--trial {trial_id}: no such trial in {store.dir} (ids 1..{n}; see mnas trials)") from None
    ids = [t.id for t in ranked_trials(store)]
    if trial_id not in ids:
        raise MnasError(f"--trial {trial_id} did not complete (status {trial.status}): nothing to export")
    return RankedTrial(ids.index(trial_id) + 1, trial)


def trial_table(store: Store) -> TrialTable:
    # one query, so a search writing beside this reader can never make the mask and the order disagree
    # a store of schema 1 opened read-only has no latency_ratio / retimed_ms columns
    have = store.columns()
    newer = ", ".join(c if c in have else "NULL" for c in ("latency_ratio", "retimed_ms"))
    rows = store.table_rows(f"id, status, accuracy, latency_ms, reward, params, macs, finished, arch, error, "
                            f"COALESCE({_RANKABLE}, 0), ROW_NUMBER() OVER (PARTITION BY COALESCE({_RANKABLE}, 0) "
                            f"ORDER BY {RANK_ORDER}), {newer} FROM trials ORDER BY id")
    cols = list(zip(*rows)) if rows else [()] * 14
    rankable = np.array(cols[10], dtype=bool)
    done = np.flatnonzero(rankable)
    position = np.array(cols[11], dtype=np.int64)

    def floats(values: tuple) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    return TrialTable(
        id=np.array(cols[0], dtype=np.int64),
        status=np.array([STATUS_CODES[TrialStatus(s)] for s in cols[1]], dtype=np.int8),
        accuracy=floats(cols[2]), latency_ms=floats(cols[3]), reward=floats(cols[4]),
        params=floats(cols[5]), macs=floats(cols[6]), finished=floats(cols[7]),
        arch=list(cols[8]), error=list(cols[9]), completed=rankable,
        order=done[np.argsort(position[done], kind="stable")] if done.size else done,
        latency_ratio=floats(cols[12]), retimed_ms=floats(cols[13]))


def token_matrix(store: Store, status: TrialStatus = TrialStatus.COMPLETED) -> np.ndarray:
    """Sampled decisions of the trials with ``status``, one row per trial (ordered by id)."""
    lists = store.tokens(status)
    if not lists:
        return np.zeros((0, 0), dtype=np.int64)
    width = max(len(t) for t in lists)
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for i, t in enumerate(lists):
        out[i, :len(t)] = t
    return out
