"""Experiments on disk: one SQLite file per experiment, written only by the search driver.

The bottom of the stack next to ``mnas.model``: it imports nothing of mnas above ``mnas.space``.
"""

from mnas.store.records import Trial, TrialStatus
from mnas.store.sqlite import Store

__all__ = ["Store", "Trial", "TrialStatus"]
