"""How good is a table: predictions for fresh random architectures against real measurements.

Evaluating never changes the table: an incomplete table is refused, or with ``partial=True`` judged only on
the architectures whose every layer it holds, and the result says so. Measuring missing entries during an
eval once grew a 20-entry table to 47 and then scored it on exactly the layers it had just measured.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any, Callable

from mnas import MnasError
from mnas.latency.lut.build import measure_archs
from mnas.latency.lut.table import LatencyTable
from mnas.latency.registry import get_backend

log = logging.getLogger(__name__)

# a partial eval draws at most this many architectures per requested sample while looking for covered ones
PARTIAL_DRAWS = 100
# calibration models measured again beside an eval's networks (the machine's speed now against then)
REFERENCES = 10


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


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages; None where the OS has none (Windows). Other jobs on the machine
    slow every measurement down, so an accuracy figure means little without them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def draw(table: LatencyTable, samples: int, seed: int, partial: bool) -> tuple[list, int]:
    """The architectures to judge the table on, and how many were drawn to find them. Seeded and distinct
    from the calibration draw; on a complete table the first ``samples`` of the draw."""
    have, needed = table.coverage()
    if have < needed and not partial:
        raise MnasError(f"table {table.path or ''} is incomplete: {have} of {needed} layer entries "
                        f"({have / needed:.0%}); finish it with 'mnas lut build' (it resumes), or use --partial "
                        "to evaluate only the architectures it covers")
    rng = random.Random(f"eval:{seed}")
    archs, drawn = [], 0
    while len(archs) < samples and drawn < samples * PARTIAL_DRAWS:
        arch = table.space.sample(rng)
        drawn += 1
        if not table.missing(arch):
            archs.append(arch)
    if not archs:
        raise MnasError(f"none of {drawn} random architectures has all its layers in the table ({have} of "
                        f"{needed} entries): finish it with 'mnas lut build'")
    return archs, drawn


def references(table: LatencyTable, n: int = REFERENCES) -> list[tuple[Any, float]]:
    """(architecture, ms measured at build time) for the first ``n`` calibration models: measured again
    beside an eval's networks, they say how fast the machine is now against when the table was built."""
    from mnas.space.arch import Architecture

    cal = table.calibration or {}
    return [(Architecture.parse(s["arch"]), float(s["measured_ms"])) for s in cal.get("samples", [])[:n]
            if s.get("measured_ms", 0) > 0]


def evaluate(table: LatencyTable, samples: int, seed: int = 0, calibrated: bool = True, partial: bool = False,
             progress: Callable[[int, int], None] | None = None, rescale: bool = True) -> dict[str, Any]:
    """``samples`` fresh architectures, each measured for real on the table's backend with the table's
    settings. Read-only: an incomplete table is refused (MnasError) unless ``partial``. Measurements whose
    rounds stayed noisy are counted in ``noisy``; ``quiet`` holds the metrics without them.

    ``rescale``: a machine's speed drifts (this VM's by 14 % within 20 minutes, under other tenants' load),
    and a table holds the speed of the hour it was built. Up to REFERENCES of its calibration models are
    measured again in the same rounds as the eval's networks; the median ratio now/then (``speed_factor``)
    scales the predictions, and ``unscaled`` holds the metrics without it."""
    import statistics

    load_start = load_average()
    have, needed = table.coverage()
    archs, drawn = draw(table, samples, seed, partial)
    refs = references(table) if rescale else []
    log.info("evaluating %s on %d architectures (%d drawn), table %d/%d entries, %d references",
             table.path or "table", len(archs), drawn, have, needed, len(refs))
    t0 = time.perf_counter()
    reps = max(1, 2000 // len(archs))
    for _ in range(reps):
        predicted = [table.predict(a, calibrated=calibrated) for a in archs]
    predict_ms = (time.perf_counter() - t0) * 1e3 / (reps * len(archs))
    uncal = [table.predict(a, calibrated=False, check_space=False) for a in archs]
    be = get_backend(table.backend)
    # measured together, rounds interleaved (mnas.latency.lut.build.measure_archs): a few seconds of
    # contention from elsewhere spoil one round of many networks, not the one figure of a few; the
    # references are spread among them so that they see the same moments
    order = _spread(len(archs), len(refs))
    pool = [archs[i] if kind == "eval" else refs[i][0] for kind, i in order]
    measured_pool = measure_archs(be, pool, table.settings, table.clock,
                                  (lambda i, n: progress(min(i, len(archs)), len(archs))) if progress else None)
    if progress:
        progress(len(archs), len(archs))
    timed = [t for (kind, _), t in zip(order, measured_pool) if kind == "eval"]
    ref_now = [t.ms for (kind, _), t in zip(order, measured_pool) if kind == "ref"]
    factor = statistics.median(now / then for now, (_, then) in zip(ref_now, refs)) if refs else 1.0
    measured = [t.ms for t in timed]
    scaled = [p * factor for p in predicted]
    out: dict[str, Any] = {**metrics(scaled, measured), "predict_ms": predict_ms, "seed": seed,
                           "backend": table.backend, "resolution": table.settings.resolution,
                           "threads": table.settings.threads, "clock": table.clock,
                           "calibrated": bool(calibrated and table.calibration_applied),
                           "speed_factor": factor if refs else None, "references": len(refs),
                           "partial": have < needed, "drawn": drawn, "table_entries": have, "space_entries": needed,
                           "noisy": sum(t.noisy for t in timed),
                           "noisy_entries": sum(bool(e.get("noisy")) for e in table.entries.values()),
                           "load_average": {"start": load_start, "end": load_average()}}
    if out["noisy"]:
        quiet = [i for i, t in enumerate(timed) if not t.noisy]
        out["quiet"] = metrics([scaled[i] for i in quiet], [measured[i] for i in quiet]) if quiet else None
    if refs:
        out["unscaled"] = {k: v for k, v in metrics(predicted, measured).items() if k != "n"}
    if table.calibration_applied and calibrated:
        out["uncalibrated"] = {k: v for k, v in metrics([u * factor for u in uncal], measured).items() if k != "n"}
    out["samples"] = [{"arch": a.canonical, "predicted_ms": round(p, 4), "measured_ms": round(t.ms, 4),
                       "noisy": t.noisy} for a, p, t in zip(archs, scaled, timed)]
    return out


def _spread(n_eval: int, n_ref: int) -> list[tuple[str, int]]:
    """The eval's networks in order with the references spread evenly among them."""
    slot = [int((j + 0.5) * n_eval / n_ref) for j in range(n_ref)]  # the eval network each goes before
    order: list[tuple[str, int]] = []
    for i in range(n_eval + 1):
        order += [("ref", j) for j in range(n_ref) if slot[j] == i]
        if i < n_eval:
            order.append(("eval", i))
    return order
