"""Experiments on disk: one SQLite file per experiment, written by the search driver (trials, its own
meta) and by ``mnas retrain`` (the ``retrained`` table only, under its own lock).

The bottom of the stack next to ``mnas.model``: it imports nothing of mnas above ``mnas.space``.
"""

from mnas.store.records import ExperimentMeta, Retrained, Trial, TrialStatus
from mnas.store.sqlite import Store

__all__ = ["ExperimentMeta", "Retrained", "Store", "Trial", "TrialStatus"]
