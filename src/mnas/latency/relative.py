"""Latency relative to a reference model, measured side by side: the candidates and the reference timed in the
same interleaved rounds (``protocol.time_interleaved``), so that a machine that slows down or speeds up while
they are timed moves every figure alike and leaves their ratios where they were. The reward needs LAT/T, not
LAT: a search times each trial beside T's model and rewards ratio x the stored T.

Only in-process backends (``LocalBackend``: onnxruntime, torch, openvino, litert) can interleave; a remote
device agent or a lookup table times one model per request, so ``supports`` says no for them and the
caller keeps their absolute figures. Every timing carries the machine's load (``os.getloadavg``, one minute)
just before and just after it, so a table can tell a busy machine's figures from a quiet one's.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from mnas.latency.base import LatencyBackend, LatencyResult
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import LocalBackend, random_input
from mnas.latency.protocol import check_pin_core, make_result, time_interleaved
from mnas.latency.settings import LatencySettings

if TYPE_CHECKING:
    from mnas.space.arch import Architecture

# prepared runners of reference models, by (backend, reference, settings): T's model is exported and loaded
# once per process, not once per trial
_RUNNERS: OrderedDict[tuple, Callable[[], Any]] = OrderedDict()
_RUNNERS_KEPT = 2


def load() -> float:
    """The machine's one-minute load average (0.0 where the OS does not say)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def supports(backend: LatencyBackend) -> bool:
    """Whether ``backend`` can time models interleaved (in this process)."""
    return isinstance(backend, LocalBackend)


@dataclass(frozen=True)
class SideBySide:
    """One interleaved timing: each candidate's result (absolute figures), the reference's (None without one),
    the ratios to it, and the machine's load before and after."""

    results: list[LatencyResult]
    reference: LatencyResult | None
    load: tuple[float, float]

    @property
    def ratios(self) -> list[float | None]:
        if self.reference is None:
            return [None] * len(self.results)
        return [ratio(r, self.reference) for r in self.results]


# names the estimate ``ratio`` takes in cache keys: ratios cached before it (the ratio of two medians) are
# not reused; change it whenever ``ratio`` changes
RATIO_ESTIMATE = "cpu-min-1"


def ratio_from(result: LatencyResult, reference: LatencyResult) -> str:
    """Which estimate of LAT/T ``ratio`` takes for two results timed in the same rounds: ``cpu-min`` (the
    fastest call of each on the process's CPU clock) for one-thread timings that carry it, else ``median``
    (the ratio of the two medians on the timing's clock). On a machine loaded to about 4, the fastest CPU-clock
    calls gave a ratio within ±5 % of a quiet re-timing for 26 of 30 networks, as often as two quiet
    re-timings agree with each other, against 5 of 30 for the wall-clock medians and 22 of 30 for the
    CPU-clock medians (docs/results/2026-12-06-ratio-estimators.md): the CPU clock leaves out the time other
    programs run, and the fastest call the cache misses they cause. With more threads the CPU clock sums them
    and is not a latency."""
    one_thread = result.threads == 1 and reference.threads == 1
    return "cpu-min" if one_thread and result.cpu_min_ms and reference.cpu_min_ms else "median"


def ratio(result: LatencyResult, reference: LatencyResult) -> float:
    """LAT/T from two results timed in the same rounds (``ratio_from`` says which estimate)."""
    if ratio_from(result, reference) == "cpu-min":
        return result.cpu_min_ms / reference.cpu_min_ms  # type: ignore[operator]
    return result.median_ms / reference.median_ms


def _reference_runner(backend: LocalBackend, spec: str, reference: Architecture,
                      settings: LatencySettings) -> Callable[[], Any]:
    key = (spec or backend.name, reference.canonical, tuple(sorted(settings.key_fields().items())))
    fn = _RUNNERS.get(key)
    if fn is None:
        shape = settings.input_shape()
        fn = functools.partial(backend.runner(reference, shape, settings), random_input(shape))
        _RUNNERS[key] = fn
        while len(_RUNNERS) > _RUNNERS_KEPT:
            _RUNNERS.popitem(last=False)
    _RUNNERS.move_to_end(key)
    return fn


def time_side_by_side(archs: list[Architecture], reference: Architecture | None, backend: LocalBackend,
                      settings: LatencySettings, spec: str = "",
                      clock: Callable[[], int] | None = None) -> SideBySide:
    """``archs`` and ``reference`` (if any) timed in the same interleaved rounds (same warmup, medians per
    model). ``spec`` names the backend for keeping the reference's runner between calls (empty: not kept)."""
    check_pin_core(settings.pin_core)
    shape = settings.input_shape()
    fns = [functools.partial(backend.runner(a, shape, settings), random_input(shape)) for a in archs]
    if reference is not None:
        fns.insert(0, _reference_runner(backend, spec, reference, settings) if spec else
                   functools.partial(backend.runner(reference, shape, settings), random_input(shape)))
    before = load()
    timings = time_interleaved(fns, settings, clock=clock)
    after = load()
    version, device = backend.runtime_version(), fingerprint()
    extra = {**backend.extra(), "load": [before, after]}

    def result(t, arch: str) -> LatencyResult:
        return make_result(t, settings, shape, backend.name, version, device, arch, dict(extra))

    ref = None if reference is None else result(timings.pop(0), reference.canonical)
    return SideBySide([result(t, a.canonical) for t, a in zip(timings, archs)], ref, (before, after))


def measure_relative(arch: Architecture, reference: Architecture, backend: LocalBackend,
                     settings: LatencySettings, spec: str = "") -> LatencyResult:
    """``arch``'s absolute result, with ``extra["relative"]``: the reference, its figure in the same rounds,
    the ratio, and the load."""
    s = time_side_by_side([arch], reference, backend, settings, spec)
    r = s.results[0]
    r.extra["relative"] = {"reference": reference.canonical, "reference_ms": s.reference.median_ms,
                           "ratio": s.ratios[0], "ratio_from": ratio_from(r, s.reference),
                           "reference_cv": s.reference.cv}
    return r
