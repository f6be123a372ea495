"""Building a latency table on the user's own backend: measure every layer configuration of a space in
context (the layer as the builder makes it, at its real input shape, exported and fused by the runtime
exactly as in a whole network), estimate the per-call overhead, optionally fit a correction on whole
models. Resumable: results are saved after every chunk of entries and a rerun measures only what is missing.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from mnas import MnasError
from mnas.latency.base import LatencyBackend, now_iso
from mnas.latency.fingerprint import fingerprint
from mnas.latency.local import LocalBackend, random_input
from mnas.latency.lut.layers import LayerSpec, space_layers
from mnas.latency.lut.table import FEATURES, SE_BIG_BYTES, SE_BIG_CHOICES, LatencyTable
from mnas.latency.protocol import Timing, time_interleaved
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencySettings

log = logging.getLogger(__name__)

ENTRY_RUNS = 16
ENTRY_ROUNDS = 8
# entries timed together, their rounds interleaved: enough that one round over all of them lasts a few
# seconds (a slow phase of the machine then spoils one round of each, not all rounds of a few)
ENTRY_CHUNK = 240
# whole networks timed together (calibration, eval): their sessions stay in memory at once
NETWORK_CHUNK = 64
# "entries": every entry is the fastest of its interleaved timed calls (ENTRY_RUNS over ENTRY_ROUNDS rounds),
# minus the same for an identity model of its output shape. Tables built before (one entry after
# another, median of 2 rounds) are "sequential"; the two are never mixed in one table.
ENTRY_METHOD = "interleaved-fastest"
# whole models the correction is fitted on by default: a sum of isolated layers misses what layers cost
# each other inside a network (an overall scale, and SE layers on big tensors: docs/latency-lut.md);
# with 20 models few hold such a layer and its coefficient is a guess; 40 cost little next to the entries
CALIBRATE = 40
CALIBRATION_FEATURES = ("sum_ms", "se_big_ms", "const")


def entry_settings(settings: LatencySettings, runs: int = ENTRY_RUNS) -> LatencySettings:
    """Entries are timed with ``runs`` calls over up to ENTRY_ROUNDS interleaved rounds, and an entry is the
    fastest call: load from elsewhere only ever adds time, and a layer is short enough that its fastest call
    is reached again and again (the median of a whole network is not, see ``time_models``). No re-measures
    (the fastest call needs none) and no BatchNorm calibration: one layer fed N(0, 1) input cannot drift
    into denormals (that needs many layers), and it would cost more than the timing itself."""
    return settings.replace(runs=runs, rounds=min(ENTRY_ROUNDS, runs), warmup=min(settings.warmup, 2),
                            max_remeasures=0, calibrate_bn=False)


Progress = Callable[[int, int, str], None]  # (done, total, current key)


CLOCKS = ("wall", "cpu")


class Timed(NamedTuple):
    ms: float  # median of the round medians: the protocol's figure, what whole networks are judged by
    # the round medians still disagreed by more than cv_threshold after every re-measure: the figure is
    # reported, but whoever reads it must know it is not a steady one
    noisy: bool
    fastest_ms: float = 0.0  # the fastest timed call (entries); the 10th percentile where only that is known
    # the fastest call was not matched within cv_threshold by the fastest call of any other round
    fastest_noisy: bool = False


def _from_timing(t: Timing, settings: LatencySettings) -> Timed:
    mins = sorted(t.round_mins_ms) or [t.p10_ms]
    unconfirmed = len(mins) > 1 and mins[1] > mins[0] * (1 + settings.cv_threshold)
    spread = t.cv if t.robust_cv is None else t.robust_cv
    return Timed(t.median_ms, spread > settings.cv_threshold, mins[0], unconfirmed)


def _check_clock(backend: LatencyBackend, settings: LatencySettings, clock: str) -> None:
    if clock not in CLOCKS:
        raise MnasError(f"clock {clock!r}: choose wall or cpu")
    if clock == "cpu" and (settings.threads != 1 or not isinstance(backend, LocalBackend)):
        raise MnasError("--clock cpu needs --threads 1 and an in-process backend (onnxruntime, torch, openvino)")


def time_models(backend: LatencyBackend, models: list[tuple[Any, tuple[int, ...]]], settings: LatencySettings,
                clock: str = "wall", prepared: Callable[[int], None] | None = None) -> list[Timed]:
    """Each (module or architecture, input shape) timed with the protocol, their rounds interleaved
    (``protocol.time_interleaved``) on in-process backends; one after another elsewhere (a remote device
    times what it is sent). ``clock="cpu"`` times the calling thread's CPU time instead of the wall clock
    (one thread only: the runtime then computes in the calling thread). ``prepared(i)`` is called as each
    model is exported and loaded, which is most of the time spent."""
    _check_clock(backend, settings, clock)
    if not isinstance(backend, LocalBackend):
        out = []
        for i, (model, shape) in enumerate(models):
            r = backend.measure_model(model, shape, settings)
            out.append(Timed(r.median_ms, r.cv > settings.cv_threshold, r.p10_ms, False))
            if prepared:
                prepared(i + 1)
        return out
    fns = []
    for i, (model, shape) in enumerate(models):
        fns.append(functools.partial(backend.runner(model, shape, settings), random_input(shape)))
        if prepared:
            prepared(i + 1)
    timings = time_interleaved(fns, settings, clock=time.thread_time_ns if clock == "cpu" else None)
    return [_from_timing(t, settings) for t in timings]


def measure_archs(backend: LatencyBackend, archs: list, settings: LatencySettings, clock: str = "wall",
                  progress: Callable[[int, int], None] | None = None) -> list[Timed]:
    """Whole networks, the ground truth a table is fitted to and judged against, NETWORK_CHUNK at a time
    with their rounds interleaved."""
    out: list[Timed] = []
    shape = settings.input_shape()
    for start in range(0, len(archs), NETWORK_CHUNK):
        chunk = archs[start:start + NETWORK_CHUNK]
        out += time_models(backend, [(a, shape) for a in chunk], settings, clock,
                           prepared=(lambda i, s=start: progress(s + i, len(archs))) if progress else None)
    return out


def out_shape(spec: LayerSpec, batch: int) -> tuple[int, ...]:
    return (batch, spec.num_classes) if spec.kind == "head" else (batch, spec.out_ch, spec.out_res, spec.out_res)


def measure_entries(backend: LatencyBackend, specs: list[LayerSpec], settings: LatencySettings,
                    io_cache: dict[tuple[int, ...], float], clock: str = "wall",
                    prepared: Callable[[int], None] | None = None) -> list[dict]:
    """Table entries for ``specs``, timed together (``time_models``, entry settings), each minus an identity
    model of its output shape: what a one-layer model pays that the same layer inside a network does not
    (the call itself, handing the output back in a new array, layout conversions at the graph boundary).
    The identity models missing from ``io_cache`` are timed in the same rounds and added to it."""
    from torch import nn

    shapes = sorted({out_shape(s, settings.batch) for s in specs} - io_cache.keys())
    models = [(s.module(), s.input_shape(settings.batch)) for s in specs] + [(nn.Identity(), sh) for sh in shapes]
    timed = time_models(backend, models, settings, clock, prepared)
    io_cache.update({sh: t.fastest_ms for sh, t in zip(shapes, timed[len(specs):])})
    out = []
    for spec, raw in zip(specs, timed):
        io = io_cache[out_shape(spec, settings.batch)]
        # never below zero: a layer cheaper than an empty call is measurement noise, not negative time
        out.append({"ms": round(max(raw.fastest_ms - io, 0.0), 6), "raw_ms": round(raw.fastest_ms, 6),
                    "io_ms": round(io, 6), "noisy": raw.fastest_noisy})
    return out


def measure_missing(table: LatencyTable, missing: list[LayerSpec]) -> dict[str, dict]:
    """The layer configurations ``missing`` that ``table`` lacks, measured now, here, as its build measured
    its own (its backend, entry settings and clock): key -> entry, for the caller to keep or not. MnasError
    where the table was built on another device (its entries and these would not be comparable)."""
    if table.device.get("id") != fingerprint()["id"]:
        keys = ", ".join(s.key for s in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise MnasError(f"the table lacks {keys} and was built on {table.device.get('cpu')!r}, not this "
                        "device: measure it there ('mnas lut build' resumes)")
    found = measure_entries(get_backend(table.backend), missing, entry_settings(table.settings, table.entry_runs),
                            {}, table.clock)
    return {spec.key: entry for spec, entry in zip(missing, found)}


def _identity(backend: LatencyBackend, shape: tuple[int, ...], settings: LatencySettings, clock: str) -> float:
    from torch import nn
    return time_models(backend, [(nn.Identity(), shape)], settings, clock)[0].fastest_ms


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
    from mnas.space.mnasnet import space_file

    path = space_file(space_path)
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
    fresh.entry_method = ENTRY_METHOD
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
    if old.entry_method != ENTRY_METHOD:
        why.append(f"entries timed {old.entry_method} (an older mnas)")
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
    started = time.perf_counter()
    spent_before = table.build_seconds
    io_cache: dict[tuple[int, ...], float] = {}
    if todo and not calibrate:
        table.calibration = None  # fitted to entries that are about to change
    for start in range(0, len(todo), ENTRY_CHUNK):
        chunk = todo[start:start + ENTRY_CHUNK]

        def tick(i: int, start: int = start, chunk: list[LayerSpec] = chunk) -> None:
            if progress:  # an entry counts once its model is loaded; the chunk's timing follows
                done = min(i, len(chunk))
                progress(start + done - 1, len(todo), chunk[done - 1].key)
        for spec, new in zip(chunk, measure_entries(be, chunk, esettings, io_cache, clock, tick)):
            table.entries[spec.key] = _merge(table.entries.get(spec.key), new)
        table.build_seconds = spent_before + time.perf_counter() - started
        table.save(out)
    if not table.overhead_ms:  # the per-call overhead a prediction adds back once: the network's output shape
        head_shape = (settings.batch, settings.num_classes)
        ms = io_cache[head_shape] if head_shape in io_cache else _identity(be, head_shape, esettings, clock)
        table.overhead_ms = round(ms, 6)
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


# the random streams of a table's design and of its evaluations: calibration networks (which fit the
# correction and choose the se_big threshold) come from "calibrate:SEED", an eval's from "eval:SEED", so no
# seed of one ever reproduces the other's draw (an eval also skips any calibration network it draws)
CALIBRATION_STREAM = "calibrate"


def calibration_archs(space: Any, n: int, seed: int) -> list:
    rng = random.Random(f"{CALIBRATION_STREAM}:{seed}")
    return [space.sample(rng) for _ in range(n)]


def calibrate_table(table: LatencyTable, backend: LatencyBackend, n: int, seed: int = 0,
                    features: tuple[str, ...] = CALIBRATION_FEATURES) -> dict:
    """Least squares of measured latency on the table's features over ``n`` random whole models: corrects
    what a sum of isolated layers misses (cache traffic between layers, graph-level fusions). The
    ``se_big`` threshold is chosen here, among SE_BIG_CHOICES, by the leave-one-out error on these same
    calibration models: no network an eval judges has any say in the table's design."""
    import numpy as np

    if n < len(features):
        raise MnasError(f"--calibrate needs at least {len(features)} models, got {n}")
    unknown = set(features) - set(FEATURES)
    if unknown:
        raise MnasError(f"unknown calibration feature(s) {sorted(unknown)}: choose from {', '.join(FEATURES)}")
    archs = calibration_archs(table.space, n, seed)
    timed = measure_archs(backend, archs, table.settings, table.clock)
    y = np.array([t.ms for t in timed], dtype=float)
    layers = [table.layers(a) for a in archs]

    def fit(threshold: int) -> tuple[list[dict], Any, Any, float]:
        feats = [table.features(a, lay, se_big_bytes=threshold) for a, lay in zip(archs, layers)]
        x = np.array([[f[k] for k in features] for f in feats], dtype=float)
        coef, *_ = np.linalg.lstsq(x, y, rcond=None)
        # judged on models it was not fitted on (leave one out)
        loo = np.array([x[i] @ np.linalg.lstsq(np.delete(x, i, 0), np.delete(y, i), rcond=None)[0]
                        for i in range(n)])
        return feats, x, coef, float(np.mean(np.abs(loo - y) / y))

    choices = SE_BIG_CHOICES if "se_big_ms" in features else (SE_BIG_BYTES,)
    fits = {th: fit(th) for th in choices}
    threshold = min(choices, key=lambda th: fits[th][3])  # the first (SE_BIG_BYTES) on a tie
    feats, x, coef, loo_mape = fits[threshold]
    samples = [{"arch": a.canonical, "measured_ms": round(t.ms, 6), "noisy": t.noisy, **{k: f[k] for k in features}}
               for a, t, f in zip(archs, timed, feats)]
    fitted = x @ coef
    # a correction that does not beat the plain sum on models it was not fitted on is kept on record but
    # not applied
    plain = np.array([f["sum_ms"] for f in feats])
    plain_mape = float(np.mean(np.abs(plain - y) / y))
    table.calibration = {"features": list(features), "coef": [float(c) for c in coef], "n": n, "seed": seed,
                         "stream": CALIBRATION_STREAM, "se_big_bytes": threshold,
                         "se_big_loo_mape": {str(th): round(f[3], 6) for th, f in fits.items()},
                         "fit_mape": float(np.mean(np.abs(fitted - y) / y)), "loo_mape": loo_mape,
                         "plain_mape": plain_mape, "applied": bool(n > len(features) and loo_mape < plain_mape),
                         "samples": samples}
    return table.calibration
