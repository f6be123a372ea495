"""One trial's work, as plain functions of plain data so any executor (in-process, Ray) can run them:
measure the latency of the deployed model, train the proxy, report both. The reward is the driver's."""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any

from mnas.search.config import ExperimentConfig


@dataclass
class TrialTask:
    trial_id: int
    arch: str  # canonical
    latency: dict[str, Any]  # {"backend": spec, "settings": LatencySettings dict, "cache": path|None}
    proxy: dict[str, Any]  # ProxyConfig dict
    seed: int = 0


@dataclass
class TrialOutcome:
    trial_id: int
    arch: str
    status: str  # completed | failed
    accuracy: float | None = None
    latency_ms: float | None = None
    latency: dict[str, Any] | None = None
    train: dict[str, Any] | None = None
    params: int | None = None
    macs: int | None = None
    error: str | None = None
    worker: str = ""
    started: float = 0.0
    finished: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency_spec(cfg: ExperimentConfig, cache_path: str | None) -> dict[str, Any]:
    settings = {"resolution": cfg.latency.resolution, "threads": cfg.latency.threads,
                "batch": cfg.latency.batch, "num_classes": cfg.latency.num_classes}
    settings.update(cfg.latency.model_dump(include={"runs", "warmup", "cv_threshold"}, exclude_none=True))
    return {"backend": cfg.latency.backend, "settings": settings,
            "cache": cache_path if cfg.latency.cache else None}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def measure_latency(arch_text: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The deployed model's latency (full width, latency resolution) plus its params and MACs."""
    from mnas.latency.base import LatencySettings, measure
    from mnas.model import build, profile
    from mnas.space import Architecture

    arch = Architecture.parse(arch_text)
    settings = LatencySettings.from_dict(spec["settings"])
    result = measure(arch, spec["backend"], settings, cache=spec.get("cache"))
    prof = profile(build(arch, num_classes=settings.num_classes), settings.resolution)
    return {"latency": result.to_dict(), "latency_ms": result.median_ms, "params": prof.params,
            "macs": prof.macs}


def train_proxy_task(arch_text: str, proxy: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train the proxy model; a NaN loss comes back as status 'failed' from the trainer itself."""
    from mnas.space import Architecture
    from mnas.train import TrainConfig, load_dataset, train_proxy

    arch = Architecture.parse(arch_text)
    data = load_dataset(proxy["dataset"], resolution=proxy["resolution"], seed=seed)
    options = dict(proxy.get("options") or {})
    if proxy.get("preset"):
        options["preset"] = proxy["preset"]
    if proxy.get("train_limit"):
        options["max_train_samples"] = proxy["train_limit"]
    config = TrainConfig(epochs=proxy["epochs"], batch_size=proxy["batch_size"],
                         resolution=proxy["resolution"], width_multiplier=proxy["width_multiplier"],
                         seed=seed, **options)
    return train_proxy(arch, data, config).to_dict()


def failure(task: TrialTask, exc: BaseException, started: float) -> TrialOutcome:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    return TrialOutcome(task.trial_id, task.arch, "failed", error=f"{type(exc).__name__}: {exc}{where}",
                        worker=worker_name(), started=started, finished=time.time())


def combine(task: TrialTask, lat: dict[str, Any], train: dict[str, Any], started: float,
            worker: str | None = None) -> TrialOutcome:
    ok = train.get("status", "ok") == "ok"
    return TrialOutcome(task.trial_id, task.arch, "completed" if ok else "failed",
                        accuracy=train.get("top1") if ok else None, latency_ms=lat["latency_ms"],
                        latency=lat["latency"], train=train, params=lat["params"], macs=lat["macs"],
                        error=None if ok else train.get("error") or "training failed",
                        worker=worker or worker_name(), started=started, finished=time.time())


def evaluate_trial(task: TrialTask) -> TrialOutcome:
    """Latency first, then training, one after the other: never time while training runs here."""
    started = time.time()
    try:
        lat = measure_latency(task.arch, task.latency)
        train = train_proxy_task(task.arch, task.proxy, task.seed)
    except Exception as exc:  # a trial that fails is recorded with its error; the search goes on
        return failure(task, exc, started)
    return combine(task, lat, train, started)
