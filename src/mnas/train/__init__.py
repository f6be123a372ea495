"""Training: the training config and its recipes, the proxy trainer, full training with checkpoints.
The data it trains on is ``mnas.data``."""

import importlib

from mnas.train.config import TrainConfig, TrainTask
from mnas.train.recipes import RECIPES

# The trainer imports torch (seconds): they load on first use, so the CLI and the
# config code, which need only the schema, start fast.
_LAZY = {"load_proxy_data": "trainer", "RMSpropTF": "rmsprop_tf", "TrainResult": "trainer",
         "train_architecture": "trainer", "train_proxy": "trainer"}

__all__ = ["RECIPES", "TrainConfig", "TrainTask", *_LAZY]


def __getattr__(name: str):
    if name == "ProxyConfig":  # the old name of TrainTask, read until the next release
        from mnas.train import config

        return config.ProxyConfig
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
