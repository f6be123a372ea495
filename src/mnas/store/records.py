"""The records of an experiment: a trial (what the driver stores, an executor returns, and every reader gets
back), a retrained model, and what the search recorded about itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, ClassVar


class TrialStatus(str, Enum):
    RUNNING = "running"  # asked and submitted; on resume it is run again
    COMPLETED = "completed"
    FAILED = "failed"
    PRUNED = "pruned"  # stopped early by the pruner: ``accuracy`` is its last intermediate value

    def __str__(self) -> str:
        return self.value


@dataclass
class Trial:
    """``tokens``, ``attempts`` and ``created`` are the store's; an executor fills in the results."""

    id: int
    arch: str  # canonical architecture string
    status: TrialStatus
    tokens: list[int] = field(default_factory=list)
    accuracy: float | None = None  # proxy top-1 in [0, 1]
    latency_ms: float | None = None  # the deployed model's measured median
    reward: float | None = None
    params: int | None = None
    macs: int | None = None
    latency: dict[str, Any] | None = None  # the full LatencyResult
    train: dict[str, Any] | None = None  # the full TrainResult
    error: str | None = None
    worker: str | None = None
    attempts: int = 1
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    # issue 32 (store schema 2): the latency timed beside T's model in the same rounds
    latency_ratio: float | None = None  # LAT / T; latency_ms is then this ratio x the stored T
    latency_abs_ms: float | None = None  # the model's own median in those rounds (latency_ms's absolute twin)
    retimed: list[dict[str, Any]] | None = None  # later re-timings, each with its load (mnas.search.retime)
    retimed_ms: float | None = None  # the median re-timed figure (ratio x the stored T where T was timed)

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass(frozen=True)
class ExperimentMeta:
    """What a search records about itself at its start (``Store.meta()``): empty or None where a store has
    no such entry (a search that never started, a store written by an older mnas or by a test)."""

    config: dict[str, Any]  # the resolved experiment config; mnas.search.config.stored_config validates it
    target_ms: float | None  # T, resolved
    reward: dict[str, Any]  # alpha, beta, target_ms
    latency: dict[str, Any]  # {"backend": name, "settings": LatencySettings as a dict}
    space: dict[str, Any]  # the space's description: name, decisions and their choices
    created: float | None  # when the search started (seconds since the epoch)
    references: list[dict[str, Any]]  # the reference models timed at the start

    KEYS: ClassVar[tuple[str, ...]] = ("config", "target_ms", "reward", "latency", "space", "created", "references")


@dataclass
class Retrained:
    """One model trained in full by ``mnas retrain`` (table ``retrained``): a searched trial or a reference
    under one recipe; ``key`` is its label and the recipe's digest."""

    key: str
    label: str
    kind: str  # trial | reference
    arch: str
    status: TrialStatus
    trial_id: int | None = None
    top1: float | None = None  # validation top-1 after the last epoch
    best_top1: float | None = None
    epochs: int | None = None
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None
    proxy_accuracy: float | None = None  # the search's proxy score of the same architecture
    checkpoint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # recipe, dataset, split, history, latency timings
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)
        self.data = self.data or {}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d
