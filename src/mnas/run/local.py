"""In-process executor: one trial at a time, latency measured before training so they never overlap."""

from __future__ import annotations

from collections import deque

from mnas.run.config import ExecutorConfig
from mnas.run.trial import TrialJob, run_trial
from mnas.store import Trial


class LocalExecutor:
    capacity = 1

    def __init__(self, cfg: ExecutorConfig | None = None) -> None:
        self._queue: deque[TrialJob] = deque()

    def submit(self, job: TrialJob) -> None:
        self._queue.append(job)

    def in_flight(self) -> int:
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> list[Trial]:
        return [run_trial(self._queue.popleft())] if self._queue else []

    def shutdown(self) -> None:
        self._queue.clear()
