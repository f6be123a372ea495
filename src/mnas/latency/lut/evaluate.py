"""How good is a table: predictions for fresh random architectures against real measurements."""

from __future__ import annotations

import random
import time
from typing import Any, Callable

from mnas.latency.lut.backend import LutBackend
from mnas.latency.lut.build import measure_arch
from mnas.latency.lut.table import LatencyTable
from mnas.latency.registry import get_backend


def metrics(predicted: list[float], measured: list[float]) -> dict[str, float]:
    import numpy as np
    from scipy.stats import kendalltau

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    rel = np.abs(p - m) / m
    tau = kendalltau(p, m).statistic if len(p) > 1 else float("nan")
    return {"n": int(len(p)), "within_10pct": float(np.mean(rel <= 0.10)), "within_5pct": float(np.mean(rel <= 0.05)),
            "mape": float(np.mean(rel)), "max_ape": float(np.max(rel)) if len(p) else float("nan"),
            "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))), "kendall_tau": float(tau),
            "bias": float(np.mean((p - m) / m))}


def evaluate(table: LatencyTable, samples: int, seed: int = 0, calibrated: bool = True,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``samples`` fresh architectures (seeded, distinct from the calibration draw), each measured for real on
    the table's backend with the table's settings."""
    rng = random.Random(f"eval:{seed}")
    archs = [table.space.sample(rng) for _ in range(samples)]
    lut = LutBackend(table)
    for a in archs:  # entries a partial table lacks are measured now, never guessed
        lut.fill_missing(a)
    t0 = time.perf_counter()
    reps = max(1, 2000 // max(1, samples))
    for _ in range(reps):
        predicted = [table.predict(a, calibrated=calibrated) for a in archs]
    predict_ms = (time.perf_counter() - t0) * 1e3 / (reps * len(archs))
    uncal = [table.predict(a, calibrated=False, check_space=False) for a in archs]
    be = get_backend(table.backend)
    rows = []
    for i, a in enumerate(archs):
        if progress:
            progress(i, len(archs))
        rows.append(measure_arch(be, a, table.settings, table.clock))
    if progress:
        progress(len(archs), len(archs))
    out: dict[str, Any] = {**metrics(predicted, rows), "predict_ms": predict_ms, "seed": seed,
                           "backend": table.backend, "resolution": table.settings.resolution,
                           "threads": table.settings.threads, "clock": table.clock,
                           "calibrated": bool(calibrated and table.calibration)}
    if table.calibration and calibrated:
        out["uncalibrated"] = {k: v for k, v in metrics(uncal, rows).items() if k != "n"}
    out["samples"] = [{"arch": a.canonical, "predicted_ms": round(p, 4), "measured_ms": round(m, 4)}
                      for a, p, m in zip(archs, predicted, rows)]
    return out
