"""The timing protocol shared by every backend, and the model every backend times.

Protocol: ``warmup`` untimed calls, then ``runs`` timed calls split into ``rounds`` rounds; the latency is
the median of the round medians, which ignores both single outliers and a whole noisy round. ``cv`` is
the coefficient of variation of the round medians. If it exceeds ``cv_threshold`` the measurement is
repeated (at most ``max_remeasures`` times) and the quietest attempt is kept: noise from other processes
only ever adds time, so the attempt whose rounds agree best is the closest to the machine's own speed.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator

from mnas import MnasError
from mnas.latency.base import LatencyResult, now_iso
from mnas.latency.settings import LatencySettings

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.arch import Architecture


@dataclass
class Timing:
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    cv: float
    sample_cv: float
    round_medians_ms: list[float]
    samples_ms: list[float] = field(repr=False, default_factory=list)
    remeasures: int = 0
    round_mins_ms: list[float] = field(repr=False, default_factory=list)
    robust_cv: float | None = None  # set by time_interleaved, whose noise criterion it is
    cpu_min_ms: float | None = None  # the fastest timed call on this process's CPU clock (``relative``)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(round_samples: list[list[float]]) -> Timing:
    medians = [statistics.median(r) for r in round_samples]
    samples = sorted(x for r in round_samples for x in r)
    mean = statistics.fmean(samples)
    std = statistics.pstdev(samples) if len(samples) > 1 else 0.0
    m_mean = statistics.fmean(medians)
    cv = statistics.pstdev(medians) / m_mean if len(medians) > 1 and m_mean > 0 else 0.0
    return Timing(statistics.median(medians), mean, percentile(samples, 0.1), percentile(samples, 0.9), std,
                  cv, std / mean if mean > 0 else 0.0, medians, samples, round_mins_ms=[min(r) for r in round_samples])


def check_pin_core(core: int | None) -> None:
    """MnasError unless this process may run on ``core`` (where the OS says which cores it may use)."""
    if core is None or not hasattr(os, "sched_getaffinity"):
        return
    allowed = sorted(os.sched_getaffinity(0))
    if core not in allowed:
        raise MnasError(f"pin_core {core}: this process may run on core(s) {', '.join(map(str, allowed))} only")


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[None]:
    """Pin this process to one core while timing (Linux); a no-op where affinity is unsupported."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    check_pin_core(core)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Limit PyTorch's intra-op threads (calibration, export, eager timing) to the measurement's budget:
    on a shared machine, spinning OpenMP threads that outnumber free cores slow everything down many-fold."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _clock(settings: LatencySettings, clock: Callable[[], int] | None) -> Callable[[], int]:
    if clock is not None:
        return clock
    return time.process_time_ns if settings.clock == "cpu" else time.perf_counter_ns


def _round(fn: Callable[[], object], calls: int, clock: Callable[[], int], cpu: list[float]) -> list[float]:
    """``calls`` timed calls of ``fn``, in ms; each call's CPU time (this process's) is appended to ``cpu``."""
    out = []
    for _ in range(calls):
        c0, t0 = time.process_time_ns(), clock()
        fn()
        t1, c1 = clock(), time.process_time_ns()
        out.append((t1 - t0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return out


def time_calls(fn: Callable[[], object], settings: LatencySettings,
               clock: Callable[[], int] | None = None) -> Timing:
    """Time ``fn`` (one inference) with the protocol above, on ``settings.clock`` unless ``clock`` is given."""
    clock = _clock(settings, clock)
    per_round = max(1, math.ceil(settings.runs / settings.rounds))
    best: Timing | None = None
    cpu: list[float] = []
    gc_was_enabled = gc.isenabled()
    with pinned(settings.pin_core):
        for _ in range(settings.warmup):
            fn()
        gc.disable()  # a collection in the middle of a round is noise, not model latency
        try:
            for attempt in range(settings.max_remeasures + 1):
                t = summarize([_round(fn, per_round, clock, cpu) for _ in range(settings.rounds)])
                if best is None or t.cv < best.cv:
                    best = t
                if t.cv <= settings.cv_threshold:
                    break
                if gc_was_enabled:
                    gc.collect()
        finally:
            if gc_was_enabled:
                gc.enable()
    assert best is not None
    best.remeasures = attempt
    best.cpu_min_ms = min(cpu[:per_round * settings.rounds])  # the first attempt: as many calls as any timing
    return best


def robust_cv(values: list[float]) -> float:
    """1.4826 x the median absolute deviation over the median: the coefficient of variation a normal sample
    would have, blind to a minority of outliers (a slow phase of the machine spoiling one round in five)."""
    med = statistics.median(values)
    if len(values) < 2 or med <= 0:
        return 0.0
    return 1.4826 * statistics.median(abs(v - med) for v in values) / med


def time_interleaved(fns: list[Callable[[], object]], settings: LatencySettings,
                     clock: Callable[[], int] | None = None) -> list[Timing]:
    """The protocol above for many models at once, their rounds interleaved: round r of every model runs
    before round r+1 of any. A slow phase of the machine (seconds of contention from outside, which on a
    shared VM can add 50 %) then lands in one round of many models rather than in every round of one, and
    the median of the round medians ignores it. Each round starts with one untimed call, because the other
    models have evicted this one's weights from the caches. A model whose round medians still spread by more
    than ``cv_threshold`` (``robust_cv``: a single spoiled round does not count) gets ``rounds`` more
    rounds, interleaved with the other such models, at most ``max_remeasures`` times; its figure is the
    median over all its rounds. Keeping the attempt whose rounds agree best, as ``time_calls`` does, would
    favour an attempt spent entirely inside a slow phase."""
    clock = _clock(settings, clock)
    per_round = max(1, math.ceil(settings.runs / settings.rounds))
    rounds: list[list[list[float]]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    attempts = [0] * len(fns)
    todo = list(range(len(fns)))
    gc_was_enabled = gc.isenabled()
    with pinned(settings.pin_core):
        for fn in fns:
            for _ in range(settings.warmup):
                fn()
        gc.disable()
        try:
            for attempt in range(settings.max_remeasures + 1):
                for _ in range(settings.rounds):
                    for i in todo:
                        fns[i]()  # untimed: the other models evicted this one from the caches
                        rounds[i].append(_round(fns[i], per_round, clock, cpu[i]))
                for i in todo:
                    attempts[i] = attempt
                todo = [i for i in todo
                        if robust_cv([statistics.median(r) for r in rounds[i]]) > settings.cv_threshold]
                if not todo:
                    break
                if gc_was_enabled:
                    gc.collect()
        finally:
            if gc_was_enabled:
                gc.enable()
    out = []
    for r, attempt, c in zip(rounds, attempts, cpu):
        t = summarize(r)
        # the fastest call of the first ``rounds`` rounds only: a model re-measured for its noise would
        # otherwise draw its minimum from more calls than the models beside it, and look faster
        t.remeasures, t.cpu_min_ms = attempt, min(c[:per_round * settings.rounds])
        t.robust_cv = robust_cv(t.round_medians_ms)
        out.append(t)
    return out


def make_result(t: Timing, settings: LatencySettings, input_shape: tuple[int, ...], backend: str,
                runtime_version: str, device: dict, arch: str | None = None, extra: dict | None = None,
                resolution: int | None = None) -> LatencyResult:
    per_round = max(1, math.ceil(settings.runs / settings.rounds))
    return LatencyResult(
        median_ms=t.median_ms, mean_ms=t.mean_ms, p10_ms=t.p10_ms, p90_ms=t.p90_ms, std_ms=t.std_ms, cv=t.cv,
        runs=per_round * settings.rounds, warmup=settings.warmup, batch=int(input_shape[0]) if input_shape else 1,
        resolution=resolution or (int(input_shape[-1]) if len(input_shape) >= 3 else settings.resolution),
        threads=settings.threads, backend=backend, runtime_version=runtime_version, device=device,
        time=now_iso(), input_shape=tuple(int(x) for x in input_shape), arch=arch, rounds=settings.rounds,
        round_medians_ms=[round(x, 6) for x in t.round_medians_ms], sample_cv=t.sample_cv,
        cpu_min_ms=None if t.cpu_min_ms is None else round(t.cpu_min_ms, 6),
        remeasures=t.remeasures, extra={"clock": settings.clock,
                                        **({"quantize": settings.quantize} if settings.quantize != "none" else {}),
                                        **(extra or {})})


def timing_model(model: nn.Module | Architecture, input_shape: tuple[int, ...],
                 settings: LatencySettings) -> nn.Module:
    """``mnas.model.export.prepare`` with the measurement's settings and thread budget: what every backend
    times (a given module's BatchNorm statistics are calibrated on a copy, never on the caller's)."""
    # imported here, not at the top: the device agent uses this module and runs without torch
    from mnas.latency.memory import check_fits
    from mnas.model.export import prepare

    check_fits(model, input_shape, settings.num_classes)
    with torch_threads(settings.threads):
        return prepare(model, input_shape, settings.num_classes, settings.calibrate_bn)


def model_file(model: nn.Module | Architecture, fmt: str, input_shape: tuple[int, ...],
               settings: LatencySettings) -> bytes:
    """The timing model exported as a ``fmt`` file (``mnas.model.export.export``), int8 when
    ``settings.quantize`` says so (calibrated on noise: the timing depends on the kernels, not the ranges)."""
    from mnas.model.export import export

    quantize = None if settings.quantize == "none" else settings.quantize
    with torch_threads(settings.threads):
        return export(timing_model(model, input_shape, settings), fmt, input_shape, quantize=quantize)
