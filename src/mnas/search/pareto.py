"""The Pareto front of accuracy (higher is better) against latency (lower is better), O(n log n).
One function for the report's front and the tabular benchmark's hypervolume."""

from __future__ import annotations

import numpy as np


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points, ordered by latency (so accuracy strictly increases).

    A point is on the front when no other point is at least as fast and at least as accurate while
    strictly better in one. Sorting by (latency, -accuracy) and keeping each point that beats the best
    accuracy seen so far gives exactly that set; of exact duplicates only the first is kept. Points
    with a NaN or infinite coordinate are ignored."""
    latency = np.asarray(latency, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(latency) & np.isfinite(accuracy))
    if ok.size == 0:
        return ok
    order = ok[np.lexsort((-accuracy[ok], latency[ok]))]
    acc = accuracy[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(acc)[:-1]))
    return order[acc > best_before]
