"""Executors: where trials run (in-process, or on a Ray cluster)."""

from mnas.run.base import Executor, make_executor

__all__ = ["Executor", "make_executor"]
