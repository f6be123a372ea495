"""``mnas retrain``: the search's best architectures and reference models trained in full under one recipe,
each recorded in the experiment's store (workflow.py)."""

from mnas.retrain.workflow import retrain

__all__ = ["retrain"]
