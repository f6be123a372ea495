"""The Pareto front (``mnas.search.pareto``, shared with the tabular benchmark) and the best model under a
latency limit."""

from __future__ import annotations

import numpy as np

from mnas.search.pareto import pareto_front

__all__ = ["best_under", "pareto_front"]


def best_under(latency: np.ndarray, accuracy: np.ndarray, limit_ms: float) -> int | None:
    """Index of the most accurate point with latency <= limit_ms (the fastest among ties), or None."""
    latency = np.asarray(latency, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero((latency <= limit_ms) & np.isfinite(accuracy))
    if ok.size == 0:
        return None
    best = ok[accuracy[ok] == accuracy[ok].max()]
    return int(best[np.argmin(latency[best])])
