"""In-process executor: one trial at a time, latency measured before training so they never overlap."""

from __future__ import annotations

from collections import deque

from mnas.search.evaluate import TrialOutcome, TrialTask, evaluate_trial


class LocalExecutor:
    capacity = 1

    def __init__(self) -> None:
        self._queue: deque[TrialTask] = deque()

    def submit(self, task: TrialTask) -> None:
        self._queue.append(task)

    def in_flight(self) -> int:
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> list[TrialOutcome]:
        return [evaluate_trial(self._queue.popleft())] if self._queue else []

    def shutdown(self) -> None:
        self._queue.clear()
