"""Proxy-task training: datasets named by a string (in memory, streamed from image folders and archives,
or read from a memory-mapped cache), a fast trainer, the paper's recipe."""

import importlib

from mnas.train.config import ProxyConfig, TrainConfig
from mnas.train.recipes import PRESETS

# The datasets and the trainer import torch (2-3 s here): they load on first use, so the CLI and the
# config code, which need only the schema, start fast.
_LAZY = {"DATASETS": "datasets", "Dataset": "datasets", "list_datasets": "datasets", "load_dataset": "datasets",
         "load_proxy_data": "datasets", "Stream": "streaming", "build_cache": "cache", "RMSpropTF": "rmsprop_tf",
         "TrainResult": "trainer", "train_architecture": "trainer", "train_proxy": "trainer"}

__all__ = ["PRESETS", "ProxyConfig", "TrainConfig", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
