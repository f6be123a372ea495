"""Executors by name: ``executor.kind`` in a config. An executor class takes the ``ExecutorConfig``."""

from __future__ import annotations

from mnas.registry import Registry
from mnas.run.base import Executor
from mnas.run.config import ExecutorConfig

EXECUTORS: Registry = Registry("executor", "mnas.executors", {
    "local": "mnas.run.local:LocalExecutor",
    "ray": "mnas.run.ray_executor:RayExecutor",
}, hint="The ray executor needs: pip install 'ray[default]'")


def make_executor(cfg: ExecutorConfig) -> Executor:
    return EXECUTORS.get(cfg.kind)(cfg)
