"""Pareto front of accuracy (higher is better) against latency (lower is better), O(n log n)."""

from __future__ import annotations

import numpy as np


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, ordered by latency.

    A point is on the front when no other point is at least as fast and at least as accurate while
    strictly better in one. Sorting by (latency, -accuracy) and keeping each point that beats the best
    accuracy seen so far gives exactly that set; of exact duplicates only the first is kept."""
    latency = np.asarray(latency, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(latency) & np.isfinite(accuracy))
    if ok.size == 0:
        return ok
    order = ok[np.lexsort((-accuracy[ok], latency[ok]))]
    acc = accuracy[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(acc)[:-1]))
    return order[acc > best_before]


def best_under(latency: np.ndarray, accuracy: np.ndarray, limit_ms: float) -> int | None:
    """Index of the most accurate point with latency <= limit_ms (the fastest among ties), or None."""
    latency = np.asarray(latency, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero((latency <= limit_ms) & np.isfinite(accuracy))
    if ok.size == 0:
        return None
    best = ok[accuracy[ok] == accuracy[ok].max()]
    return int(best[np.argmin(latency[best])])
