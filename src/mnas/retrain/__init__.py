"""``mnas retrain``: the search's best architectures and reference models trained in full under one recipe,
each recorded in the experiment's store (workflow.py; its defaults: config.py)."""

import importlib

_LAZY = {"retrain": "workflow", "RetrainConfig": "config"}  # the workflow imports torch: on first use

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
