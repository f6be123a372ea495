"""One trial's work (measure the deployed model, train the proxy) and the executors that run it."""

from mnas.run.base import Executor
from mnas.run.config import ExecutorConfig
from mnas.run.registry import EXECUTORS, make_executor
from mnas.run.trial import LatencyJob, TrialJob, run_trial

__all__ = ["EXECUTORS", "Executor", "ExecutorConfig", "LatencyJob", "TrialJob", "make_executor", "run_trial"]
