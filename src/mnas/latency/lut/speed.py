"""The machine's speed now against when a table was built: the table's reference models (its first
calibration networks, with the latency measured at build time) timed again on the table's own backend.
A search on ``lut:PATH`` scales its predictions by this factor (``LutBackend``), and ``lut eval`` reports
the figures with the factor a search would have computed at its start."""

from __future__ import annotations

import statistics
from typing import Any

from mnas import MnasError
from mnas.latency.base import now_iso
from mnas.latency.fingerprint import fingerprint
from mnas.latency.lut.build import measure_archs
from mnas.latency.lut.table import LatencyTable
from mnas.latency.registry import get_backend

# calibration models measured again (beside an eval's networks, or at a search's start)
REFERENCES = 10


def references(table: LatencyTable, n: int = REFERENCES) -> list[tuple[Any, float]]:
    """(architecture, ms measured at build time) for the first ``n`` calibration models: measured again,
    they say how fast the machine is now against when the table was built."""
    from mnas.space.arch import Architecture

    cal = table.calibration or {}
    return [(Architecture.parse(s["arch"]), float(s["measured_ms"])) for s in cal.get("samples", [])[:n]
            if s.get("measured_ms", 0) > 0]


def unavailable(table: LatencyTable) -> str | None:
    """Why the references cannot be timed again on this machine, or None when they can."""
    if table.device.get("id") and table.device.get("id") != fingerprint()["id"]:
        return (f"the table was built on {table.device.get('cpu') or 'another machine'!r}, not on this one: "
                "its predictions are not rescaled to this machine's speed")
    if not references(table):
        return "the table has no reference models (built with --calibrate 0): predictions are not rescaled"
    return None


def time_references(table: LatencyTable, n: int = REFERENCES, also: list[Any] = ()) -> dict[str, Any]:
    """The references timed again now, by themselves (as a search does at its start), interleaved with one
    another and with the architectures ``also`` (T's model): {"factor": median of now / at build,
    "references", "ratios", "time", "also_ms": ``also``'s figures now}. MnasError when the table's backend
    cannot run here."""
    refs = references(table, n)
    if not refs:
        raise MnasError(unavailable(table) or "the table has no reference models")
    extra = list(also)
    # T in the middle of the references, so that it sees the same moments as they do
    archs = [a for a, _ in refs]
    pool = archs[:len(archs) // 2] + extra + archs[len(archs) // 2:]
    timed = measure_archs(get_backend(table.backend), pool, table.settings, table.clock)
    mid = len(archs) // 2
    ref_timed = timed[:mid] + timed[mid + len(extra):]
    ratios = [t.ms / then for t, (_, then) in zip(ref_timed, refs)]
    return {"factor": statistics.median(ratios), "references": len(refs), "ratios": [round(r, 4) for r in ratios],
            "time": now_iso(), "also_ms": [t.ms for t in timed[mid:mid + len(extra)]]}
