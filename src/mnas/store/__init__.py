"""Experiments on disk: one SQLite file per experiment, written only by the driver."""

from mnas.store.sqlite import Store, TrialRecord

__all__ = ["Store", "TrialRecord"]
