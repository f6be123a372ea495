"""Training: the training config and its recipes, the proxy trainer, full training with checkpoints.
The data it trains on is ``mnas.data``."""

import importlib

from mnas.schema import old_name
from mnas.train.config import TrainConfig, TrainTask
from mnas.train.recipes import RECIPES

# The trainer imports torch (seconds): its names load on first use, so the CLI and the config code,
# which need only the schema, start fast.
_LAZY = {"load_proxy_data": "trainer", "RMSpropTF": "rmsprop_tf", "TrainResult": "trainer",
         "train_architecture": "trainer", "train_proxy": "trainer"}

__all__ = ["RECIPES", "TrainConfig", "TrainTask", *_LAZY]

# Names read until the next release: renamed, or moved to mnas.data (name -> module, its name there)
_MOVED = {"ProxyConfig": ("mnas.train.config", "TrainTask"), "PRESETS": ("mnas.train.recipes", "RECIPES"),
          **{n: ("mnas.data", n) for n in ("DATASETS", "Dataset", "list_datasets", "load_dataset", "Stream",
                                           "build_cache")}}


def __getattr__(name: str):
    if name in _MOVED:
        module, new = _MOVED[name]
        shown = new if module.startswith(__name__) else f"{module}.{new}"
        return old_name(__name__, name, {name: shown}, {shown: getattr(importlib.import_module(module), new)})
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
