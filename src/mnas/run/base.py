"""The Executor protocol: the driver submits trials and waits for outcomes, which may arrive out of order."""

from __future__ import annotations

from typing import Protocol

from mnas.run.trial import TrialJob
from mnas.store import Trial


class Executor(Protocol):
    capacity: int  # how many trials may be in flight at once

    def submit(self, job: TrialJob) -> None: ...

    def wait(self, timeout: float | None = None) -> list[Trial]:
        """At least one finished trial when anything is in flight (unless timeout passes)."""
        ...

    def in_flight(self) -> int: ...

    def shutdown(self) -> None: ...
