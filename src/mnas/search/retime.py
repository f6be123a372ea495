"""Latency beside T (issue 32): the job that times every trial in the same rounds as T's model, and the
re-timing of the Pareto front and the top trials at the end of a search (and on ``mnas report --remeasure``).

A re-timing times the chosen trials and T's model interleaved on the search's own backend and settings (no
cache), and appends to each trial's ``retimed`` list one entry: its absolute figure, T's in the same rounds,
their ratio, when, and the machine's load before and after. ``retimed_ms`` is the median over every entry
kept of ratio x the stored T (of the absolute figures where T's model is unknown), so one draw on a drifting
machine never decides a close comparison; the search-time ``latency_ms`` stays as it was recorded.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.run import LatencyJob
from mnas.search.config import ExperimentConfig, stored_config
from mnas.search.pareto import pareto_front
from mnas.store import Store, Trial

log = logging.getLogger(__name__)

CHUNK = 8  # trials per interleaved timing, beside T's model: the runners of all of them are alive at once


def reference_arch(cfg: ExperimentConfig) -> str | None:
    """T's model as a canonical architecture, None when T is a number (``reward.target_ms``) or absent."""
    if cfg.reward.target_model is None:
        return None
    from mnas.space import resolve_arch

    return resolve_arch(cfg.reward.target_model)[1].canonical


def relative_job(cfg: ExperimentConfig, job: LatencyJob, target_ms: float | None) -> LatencyJob:
    """``job`` timing each trial beside T's model, rewarded as ratio x ``target_ms`` (the stored T), where
    ``latency.relative`` is on and T is a model; ``job`` as it is otherwise."""
    ref = reference_arch(cfg) if cfg.latency.relative and target_ms is not None else None
    if ref is None:
        return job
    return replace(job, reference=ref, anchor_ms=float(target_ms))


def choose(store: Store, top: int) -> list[Trial]:
    """The Pareto front of the completed trials (accuracy against their latency, re-timed where it was) and
    the ``top`` trials by reward, one trial per architecture."""
    from mnas.store.query import ranked_trials

    ranked = ranked_trials(store)
    latency = [t.retimed_ms if t.retimed_ms is not None else t.latency_ms for t in ranked]
    front = {int(i) for i in pareto_front(latency, [t.accuracy for t in ranked])}
    chosen, archs = [], set()
    for i, t in enumerate(ranked):
        if (i < top or i in front) and t.arch not in archs:
            archs.add(t.arch)
            chosen.append(t)
    return chosen


def retime(store: Store, trials: list[Trial], job: LatencyJob, reference: str | None,
           target_ms: float | None) -> list[Trial]:
    """Time ``trials`` afresh beside ``reference`` (interleaved on in-process backends; one model after
    another, T first, on a remote agent or a table) and record each timing (module docstring)."""
    from mnas.latency import get_backend, measure, relative
    from mnas.space import Architecture

    if not trials:
        return []
    be = get_backend(job.backend)
    ref = Architecture.parse(reference) if reference else None
    entries: list[dict[str, Any]] = []
    if relative.supports(be):
        for start in range(0, len(trials), CHUNK):
            chunk = trials[start:start + CHUNK]
            s = relative.time_side_by_side([Architecture.parse(t.arch) for t in chunk], ref, be, job.settings,
                                           spec=job.backend)
            for r, ratio in zip(s.results, s.ratios):
                entries.append(_entry(r.median_ms, ratio, s.reference and s.reference.median_ms, s.load, True))
    else:
        ref_ms = measure(ref, be, job.settings).median_ms if ref is not None else None
        for t in trials:
            before = relative.load()
            ms = measure(Architecture.parse(t.arch), be, job.settings).median_ms
            entries.append(_entry(ms, ms / ref_ms if ref_ms else None, ref_ms, (before, relative.load()), False))
    out = []
    with store.transaction() as c:
        for t, e in zip(trials, entries):
            runs = [*(t.retimed or []), e]
            ratios = [r["ratio"] for r in runs if r.get("ratio") is not None]
            figure = (statistics.median(ratios) * target_ms if target_ms and len(ratios) == len(runs)
                      else statistics.median(r["latency_ms"] for r in runs))
            store.set_trial_fields(t.id, c, retimed=runs, retimed_ms=figure)
            out.append(replace(t, retimed=runs, retimed_ms=figure))
    return out


def _entry(ms: float, ratio: float | None, ref_ms: float | None, load: tuple[float, float],
           interleaved: bool) -> dict[str, Any]:
    return {"latency_ms": ms, "ratio": ratio, "reference_ms": ref_ms, "interleaved": interleaved,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load": [load[0], load[1]]}


def retime_front(store: Store, cfg: ExperimentConfig, top: int) -> list[Trial]:
    """Re-time the front and the top ``top`` trials of the experiment in ``store`` (a writer)."""
    chosen = choose(store, top)
    target = store.meta().target_ms
    reference = reference_arch(cfg) if target is not None else None
    log.info("re-timing %d trials (the Pareto front and the top %d) on %s%s", len(chosen), top, cfg.latency.backend,
             " beside T's model" if reference else "")
    return retime(store, chosen, LatencyJob.from_config(cfg.latency, None), reference, target)


def retime_experiment(directory: str | Path, top: int) -> list[Trial]:
    """``mnas report EXPERIMENT --remeasure``: the experiment's front and top ``top`` re-timed, under its lock."""
    Store(directory, readonly=True).close()  # a missing or damaged experiment: its one-line error first
    with Store(directory, create=False) as store:
        cfg = stored_config(store)
        if not store.counts()["completed"]:
            raise MnasError(f"{directory} has no completed trial to re-time")
        return retime_front(store, cfg, top)
