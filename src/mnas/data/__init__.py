"""The data a model trains on, named by a spec string: small sets held in memory as uint8 tensors
(``Dataset``), image folders and archives streamed (``Stream``), or read from a memory-mapped cache; and
the feeds that bring their batches to the trainer."""

import importlib

# Everything here imports torch (seconds): names load on first use, so code that needs only a spec's
# name (the CLI, the config) starts fast.
_LAZY = {"DATASETS": "datasets", "Dataset": "base", "DEFAULT_HOLDOUT": "base", "list_datasets": "datasets",
         "load_dataset": "datasets", "Stream": "streaming", "build_cache": "cache"}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
