"""The Executor protocol: the driver submits trials and waits for outcomes, which may arrive out of order."""

from __future__ import annotations

from typing import Protocol

from mnas import MnasError
from mnas.search.config import ExecutorConfig
from mnas.search.evaluate import TrialOutcome, TrialTask


class Executor(Protocol):
    capacity: int  # how many trials may be in flight at once

    def submit(self, task: TrialTask) -> None: ...

    def wait(self, timeout: float | None = None) -> list[TrialOutcome]:
        """At least one outcome when anything is in flight (unless timeout passes)."""
        ...

    def in_flight(self) -> int: ...

    def shutdown(self) -> None: ...


def make_executor(cfg: ExecutorConfig) -> Executor:
    if cfg.kind == "local":
        from mnas.run.local import LocalExecutor
        return LocalExecutor()
    if cfg.kind == "ray":
        try:
            from mnas.run.ray_executor import RayExecutor
        except ImportError as e:
            raise MnasError(f"the ray executor needs Ray installed ({e}); pip install 'ray[default]'") from None
        return RayExecutor(cfg)
    raise MnasError(f"unknown executor kind {cfg.kind!r}: expected local or ray")
