"""The one record of a trial: what the driver stores, an executor returns, and every reader gets back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class TrialStatus(str, Enum):
    RUNNING = "running"  # asked and submitted; on resume it is run again
    COMPLETED = "completed"
    FAILED = "failed"

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

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d
