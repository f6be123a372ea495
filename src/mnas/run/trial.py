"""One trial's work, as plain functions of typed, picklable jobs so any executor (in-process, Ray) runs them:
measure the latency of the deployed model, train the proxy, report both. The reward is the driver's."""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mnas.latency import LatencyConfig, LatencySettings
from mnas.run.pruning import PrunerConfig, TrialCurve
from mnas.store import Trial, TrialStatus
from mnas.train import TrainTask

log = logging.getLogger(__name__)

# Who wants to know what an in-process trial is doing (the CLI's progress bar): (trial id, phase). Trials on
# other processes or machines (Ray) do not report here; their drivers show them as in flight.
PhaseListener = Callable[[int, str], None]
_listeners: list[PhaseListener] = []


@contextmanager
def phases(listener: PhaseListener) -> Iterator[None]:
    """Call ``listener(trial_id, phase)`` as trials in this process enter "measuring", "training" and "done"."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _phase(trial_id: int, phase: str) -> None:
    log.debug("trial %d: %s", trial_id, phase)
    for listener in list(_listeners):
        listener(trial_id, phase)


@dataclass(frozen=True)
class LatencyJob:
    """How to time a trial's deployed model: a backend spec, its settings and an optional cache file.
    ``reference`` (a canonical architecture, T's model) and ``anchor_ms`` (the stored T): time the model
    beside the reference where the backend can (``mnas.latency.relative``) and report ratio x anchor."""

    backend: str
    settings: LatencySettings
    cache: str | None = None
    reference: str | None = None
    anchor_ms: float | None = None

    @classmethod
    def from_config(cls, cfg: LatencyConfig, cache: str | None) -> LatencyJob:
        return cls(cfg.backend, cfg.settings(), cache if cfg.cache else None)


@dataclass(frozen=True)
class LatencyMeasurement:
    latency: dict[str, Any]  # LatencyResult.to_dict()
    latency_ms: float  # ratio x anchor where timed beside the reference, else the absolute median
    params: int
    macs: int
    ratio: float | None = None  # LAT / T, both timed in the same rounds
    absolute_ms: float | None = None  # the model's own median in those rounds


@dataclass(frozen=True)
class PruneJob:
    """How a trial's proxy training may be stopped early: the rule and the other trials' curves
    (mnas.run.pruning) as they were when the trial was submitted."""

    pruner: PrunerConfig
    history: tuple[TrialCurve, ...] = ()


@dataclass(frozen=True)
class TrialJob:
    trial_id: int
    arch: str  # canonical
    latency: LatencyJob
    proxy: TrainTask
    seed: int = 0
    pruning: PruneJob | None = None  # None: the proxy trains to the end


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def measure_latency(arch_text: str, job: LatencyJob) -> LatencyMeasurement:
    """The deployed model's latency (full width, latency resolution) plus its params and MACs."""
    from mnas.latency import measure
    from mnas.model import build, profile
    from mnas.space import Architecture

    arch = Architecture.parse(arch_text)
    side_by_side = job.reference is not None and job.anchor_ms is not None
    result = measure(arch, job.backend, job.settings, cache=job.cache,
                     reference=Architecture.parse(job.reference) if side_by_side else None)
    prof = profile(build(arch, num_classes=job.settings.num_classes), job.settings.resolution)
    relative = result.extra.get("relative") if side_by_side else None
    if relative is None:  # no reference, or a backend that times one model at a time
        return LatencyMeasurement(result.to_dict(), result.median_ms, prof.params, prof.macs)
    ratio = float(relative["ratio"])
    return LatencyMeasurement(result.to_dict(), ratio * float(job.anchor_ms), prof.params, prof.macs, ratio,
                              result.median_ms)


def train_proxy_job(arch_text: str, proxy: TrainTask, seed: int, pruning: PruneJob | None = None) -> dict[str, Any]:
    """The trial's accuracy, marked with its ``source``: from ``proxy.estimator`` when it names another source
    than proxy training (``supernet:DIR``: no training, so nothing to prune); else train the proxy model: a
    NaN loss comes back as status 'failed' from the trainer itself, a training the pruner stopped as status
    'pruned' (its curve and rungs under "pruning")."""
    from mnas.space import Architecture
    from mnas.train import train_architecture

    if proxy.estimator not in (None, "train"):
        from mnas.run.estimators import estimator

        return {"source": proxy.estimator, **estimator(proxy.estimator).evaluate(arch_text, proxy, seed)}
    arch = Architecture.parse(arch_text)
    if pruning is None or not pruning.pruner.enabled:
        return {**train_architecture(arch, proxy, seed).to_dict(), "source": "train"}
    from mnas.run.pruning import Decider
    from mnas.train.trainer import Watch

    decider = Decider(pruning.pruner, list(pruning.history))

    def report(step: int, top1: float) -> bool:
        decider.report(step, top1)
        return decider.should_prune()

    result = train_architecture(arch, proxy, seed, Watch(pruning.pruner.every, report)).to_dict()
    result["pruning"] = {"intermediate": result["intermediate"], "rungs": decider.rungs}
    result["source"] = "train"
    return result


def error_line(exc: BaseException) -> str:
    """The trial's error as one line with where it happened (made where the traceback still exists)."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def failed(job: TrialJob, error: str, started: float, worker: str | None = None) -> Trial:
    return Trial(job.trial_id, job.arch, TrialStatus.FAILED, error=error, worker=worker or worker_name(),
                 started=started, finished=time.time())


def combine(job: TrialJob, lat: LatencyMeasurement, train: dict[str, Any], started: float,
            worker: str | None = None) -> Trial:
    status = train.get("status", "ok")
    ok = status in ("ok", "pruned")  # a pruned trial keeps its last intermediate accuracy
    return Trial(job.trial_id, job.arch, TrialStatus.PRUNED if status == "pruned" else
                 TrialStatus.COMPLETED if ok else TrialStatus.FAILED,
                 accuracy=train.get("top1") if ok else None, latency_ms=lat.latency_ms, latency=lat.latency,
                 latency_ratio=lat.ratio, latency_abs_ms=lat.absolute_ms,
                 train=train, params=lat.params, macs=lat.macs,
                 error=None if ok else train.get("error") or "training failed",
                 worker=worker or worker_name(), started=started, finished=time.time())


def run_trial(job: TrialJob) -> Trial:
    """Latency first, then training, one after the other: never time while training runs here."""
    started = time.time()
    try:
        _phase(job.trial_id, "measuring")
        lat = measure_latency(job.arch, job.latency)
        _phase(job.trial_id, "training")
        train = train_proxy_job(job.arch, job.proxy, job.seed, job.pruning)
    except Exception as exc:  # a trial that fails is recorded with its error; the search goes on
        return failed(job, error_line(exc), started)
    finally:
        _phase(job.trial_id, "done")
    return combine(job, lat, train, started)
