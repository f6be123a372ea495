"""Summaries over seeds: mean, spread, median, and a one-sided Mann-Whitney U p-value against random
search (regrets: smaller than random; hv_ratio: larger)."""

from __future__ import annotations

import numpy as np


def summarise(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "median": float(np.median(arr))}


def p_value(x: list[float], y: list[float], alternative: str) -> float | None:
    """P(the difference is chance) for ``x`` being ``alternative`` ("less", "greater") than ``y``; None
    below two values a side."""
    from scipy.stats import mannwhitneyu  # scipy only when a report is made

    if len(x) < 2 or len(y) < 2:
        return None
    # both constant and equal up to rounding (e.g. every run found the optimum): no evidence either
    # way, where a rank test would read the rounding noise as a perfect separation
    if np.allclose(x, x[0]) and np.allclose(y, y[0]) and np.isclose(x[0], y[0]):
        return 1.0
    return float(mannwhitneyu(x, y, alternative=alternative).pvalue)
