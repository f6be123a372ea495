"""Proxy-task training: in-memory datasets named by a string, a fast trainer, the paper's recipe."""

from mnas.train.datasets import Dataset, list_datasets, load_dataset
from mnas.train.recipes import PRESETS, list_presets
from mnas.train.rmsprop_tf import RMSpropTF
from mnas.train.trainer import TrainConfig, TrainResult, train_proxy

__all__ = ["Dataset", "list_datasets", "load_dataset", "PRESETS", "list_presets", "RMSpropTF",
           "TrainConfig", "TrainResult", "train_proxy"]
