"""Building a latency table on the user's own backend: measure every layer configuration of a space in
context (the layer as the builder makes it, at its real input shape, exported and fused by the runtime
exactly as in a whole network), estimate the per-call overhead, optionally fit a correction on whole
models. Resumable: partial results are saved every few seconds and a rerun measures only what is missing.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Callable, NamedTuple

from mnas import MnasError
from mnas.latency.base import LatencyBackend, now_iso
from mnas.latency.cache import measure
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import LocalBackend, random_input
from mnas.latency.lut.layers import LayerSpec, space_layers
from mnas.latency.lut.table import FEATURES, LatencyTable
from mnas.latency.protocol import time_calls
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencySettings

log = logging.getLogger(__name__)

SAVE_EVERY_S = 5.0
ENTRY_RUNS = 10


def entry_settings(settings: LatencySettings, runs: int = ENTRY_RUNS) -> LatencySettings:
    """Per-entry timing is cheaper than a whole-model measurement: an entry's noise averages out over the
    ~20 layers of a network, and 1,400 entries at 30 runs with re-measures take an hour on a busy machine.
    BatchNorm calibration is off because one layer fed N(0, 1) input cannot drift into denormals (that
    needs many layers), and it would cost more than the timing itself."""
    return settings.replace(runs=runs, rounds=min(settings.rounds, 2), warmup=min(settings.warmup, 2),
                            max_remeasures=min(settings.max_remeasures, 1), calibrate_bn=False)


Progress = Callable[[int, int, str], None]  # (done, total, current key)


CLOCKS = ("wall", "cpu")


class Timed(NamedTuple):
    ms: float  # median of the round medians
    # the round medians still disagreed by more than cv_threshold after every re-measure: the figure is
    # reported, but whoever reads it must know it is not a steady one
    noisy: bool


def _timed(median_ms: float, cv: float, settings: LatencySettings) -> Timed:
    return Timed(median_ms, cv > settings.cv_threshold)


def time_model(backend: LatencyBackend, model, shape: tuple[int, ...], settings: LatencySettings,
               clock: str = "wall") -> Timed:
    """``model`` (a module or an architecture) timed at ``shape``. ``clock="cpu"`` times the calling
    thread's CPU time instead of the wall clock: on a machine shared with other jobs a 5 ms model can take
    20 ms of wall time while its own work stays 5 ms. Valid only with one thread (the runtime then computes
    in the calling thread)."""
    if clock == "wall":
        r = backend.measure_model(model, shape, settings)
        return _timed(r.median_ms, r.cv, settings)
    if clock not in CLOCKS:
        raise MnasError(f"clock {clock!r}: choose wall or cpu")
    if settings.threads != 1 or not isinstance(backend, LocalBackend):
        raise MnasError("--clock cpu needs --threads 1 and an in-process backend (onnxruntime, torch, openvino)")
    infer = backend.runner(model, shape, settings)
    x = random_input(shape)
    t = time_calls(lambda: infer(x), settings, clock=time.thread_time_ns)
    return _timed(t.median_ms, t.cv, settings)


def measure_arch(backend: LatencyBackend, arch, settings: LatencySettings, clock: str = "wall") -> Timed:
    """A whole network, the ground truth a table is fitted to and judged against."""
    if clock == "wall":
        r = measure(arch, backend, settings)
        return _timed(r.median_ms, r.cv, settings)
    return time_model(backend, arch, settings.input_shape(), settings, clock)


def _identity_ms(backend: LatencyBackend, shape: tuple[int, ...], settings: LatencySettings,
                 cache: dict[tuple[int, ...], float], clock: str = "wall") -> float:
    """What a one-layer model pays that the same layer inside a network does not: the call itself,
    handing the output back (copied into a new array), layout conversions at the graph boundary."""
    if shape not in cache:
        from torch import nn
        cache[shape] = time_model(backend, nn.Identity(), shape, settings, clock).ms
    return cache[shape]


def measure_entry(backend: LatencyBackend, spec: LayerSpec, settings: LatencySettings,
                  io_cache: dict[tuple[int, ...], float], clock: str = "wall") -> dict:
    raw = time_model(backend, spec.module(), spec.input_shape(settings.batch), settings, clock)
    out_shape = ((settings.batch, spec.num_classes) if spec.kind == "head" else
                 (settings.batch, spec.out_ch, spec.out_res, spec.out_res))
    io = _identity_ms(backend, out_shape, settings, io_cache, clock)
    # never below zero: a layer cheaper than an empty call is measurement noise, not negative time
    return {"ms": round(max(raw.ms - io, 0.0), 6), "raw_ms": round(raw.ms, 6), "io_ms": round(io, 6),
            "noisy": raw.noisy}


def _merge(old: dict | None, new: dict) -> dict:
    """Keep the fastest of several passes (raw time and identity overhead separately); the noise flag
    goes with the raw time that is kept."""
    if not old:
        return {**new, "passes": 1}
    raw, io = min(old["raw_ms"], new["raw_ms"]), min(old["io_ms"], new["io_ms"])
    noisy = new["noisy"] if new["raw_ms"] < old["raw_ms"] else old.get("noisy", False)
    return {"ms": round(max(raw - io, 0.0), 6), "raw_ms": raw, "io_ms": io, "noisy": noisy,
            "passes": old.get("passes", 1) + 1}


def new_table(space_path: str | Path | None, backend: str, settings: LatencySettings,
              clock: str = "wall") -> LatencyTable:
    from mnas.space.mnasnet import DEFAULT_SPACE

    path = Path(space_path) if space_path else DEFAULT_SPACE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MnasError(f"space file {path} does not exist") from None
    be = get_backend(backend)
    if be.name.startswith("lut"):
        raise MnasError("a table is built on a real backend (onnxruntime, torch, openvino, remote:URL), not lut:")
    version = be.identity(settings)["runtime_version"]
    table = LatencyTable(space_yaml=text, backend=be.name, settings=settings, runtime_version=version,
                         device=fingerprint(), created=now_iso(), clock=clock)
    table.space  # parse now: a bad space file fails before any measuring
    return table


def resume_or_new(out: Path, space_path: str | Path | None, backend: str, settings: LatencySettings,
                  entry_runs: int = ENTRY_RUNS, clock: str = "wall") -> LatencyTable:
    if clock not in CLOCKS:
        raise MnasError(f"clock {clock!r}: choose wall or cpu")
    fresh = new_table(space_path, backend, settings, clock)
    fresh.entry_runs = entry_runs
    if not out.exists():
        return fresh
    old = LatencyTable.load(out)
    why = []
    if old.space_sha != fresh.space_sha:
        why.append("another space")
    if old.backend != fresh.backend:
        why.append(f"backend {old.backend}")
    if old.settings.key_fields() != settings.key_fields() or old.entry_runs != entry_runs:
        why.append("other settings")
    if old.clock != clock:
        why.append(f"clock {old.clock}")
    if old.device.get("id") != fresh.device.get("id"):
        why.append(f"device {old.device.get('cpu')}")
    if why:
        raise MnasError(f"{out} holds a table built for {', '.join(why)}: remove it or choose another --out")
    old.runtime_version = fresh.runtime_version
    return old


def build_table(out: str | Path, space: str | Path | None = None, backend: str = "onnxruntime",
                settings: LatencySettings | None = None, calibrate: int = 0, limit: int | None = None,
                seed: int = 0, progress: Progress | None = None, entry_runs: int = ENTRY_RUNS,
                clock: str = "wall", passes: int = 1) -> LatencyTable:
    """Measure what ``out`` still lacks (all of it on a first run), then calibrate on ``calibrate`` whole
    models. ``settings`` are the whole-model settings (calibration, eval); entries use ``entry_runs`` runs.
    ``limit`` stops after that many new entries (the table stays resumable); ``progress`` counts up to
    the number of entries this run measures. ``passes`` > 1 measures every
    entry that many times at different moments and keeps the fastest: load from other jobs only ever adds
    time, and it drifts over a build, so one pass leaves whole stretches of entries too slow."""
    settings = settings or LatencySettings()
    out = Path(out)
    table = resume_or_new(out, space, backend, settings, entry_runs, clock)
    esettings = entry_settings(settings, entry_runs)
    be = get_backend(backend)
    specs = space_layers(table.space, settings.resolution, settings.in_chans, settings.num_classes)
    table.expected = len(specs)
    todo = [s for s in specs if table.entries.get(s.key, {}).get("passes", 1 if s.key in table.entries else 0)
            < passes]
    if limit is not None:
        todo = todo[:max(0, limit)]
    log.info("%s: %d of %d entries to measure on %s", out, len(todo), len(specs), be.name)
    started, last_save = time.perf_counter(), time.perf_counter()
    spent_before = table.build_seconds
    io_cache: dict[tuple[int, ...], float] = {}
    if not table.overhead_ms:
        table.overhead_ms = round(_identity_ms(be, (settings.batch, settings.num_classes), esettings, io_cache,
                                              clock), 6)
    if todo and not calibrate:
        table.calibration = None  # fitted to entries that are about to change
    for done, spec in enumerate(todo):
        if progress:
            progress(done, len(todo), spec.key)
        new = measure_entry(be, spec, esettings, io_cache, clock)
        table.entries[spec.key] = _merge(table.entries.get(spec.key), new)
        if time.perf_counter() - last_save > SAVE_EVERY_S:
            table.build_seconds = spent_before + time.perf_counter() - started
            table.save(out)
            last_save = time.perf_counter()
    if progress:
        progress(len(todo), len(todo), "")
    table.build_seconds = spent_before + time.perf_counter() - started
    table.save(out)
    if calibrate and table.complete:
        log.info("%s: calibrating on %d whole models", out, calibrate)
        calibrate_table(table, be, calibrate, seed=seed)
        table.build_seconds = spent_before + time.perf_counter() - started
        table.save(out)
    return table


def calibrate_table(table: LatencyTable, backend: LatencyBackend, n: int, seed: int = 0,
                    features: tuple[str, ...] = ("sum_ms", "const")) -> dict:
    """Least squares of measured latency on the table's features over ``n`` random whole models: corrects
    what a sum of isolated layers misses (cache traffic between layers, graph-level fusions)."""
    import numpy as np

    if n < len(features):
        raise MnasError(f"--calibrate needs at least {len(features)} models, got {n}")
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise MnasError(f"unknown calibration feature(s) {sorted(unknown)}: choose from {', '.join(FEATURES)}")
    rng = random.Random(f"calibrate:{seed}")
    samples = []
    for _ in range(n):
        arch = table.space.sample(rng)
        f = table.features(arch)
        measured = measure_arch(backend, arch, table.settings, table.clock)
        samples.append({"arch": arch.canonical, "measured_ms": round(measured.ms, 6), "noisy": measured.noisy,
                        **{k: f[k] for k in features}})
    x = np.array([[s[k] for k in features] for s in samples], dtype=float)
    y = np.array([s["measured_ms"] for s in samples], dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    fit = x @ coef
    table.calibration = {"features": list(features), "coef": [float(c) for c in coef], "n": n, "seed": seed,
                         "fit_mape": float(np.mean(np.abs(fit - y) / y)), "samples": samples}
    return table.calibration

