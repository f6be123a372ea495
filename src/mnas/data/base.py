"""What every data path returns: ``Dataset``, images held in memory (or memory-mapped) as uint8 tensors,
and the default validation split. Its own module so that datasets.py and cache.py both import it and
neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config code imports this module and must not pay for torch
    import torch

# A fifth of the training images is held out when the source has no val/ or test/ folder of its own.
DEFAULT_HOLDOUT = 0.2


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val images as uint8 (N, C, H, W) tensors, labels as int64; the trainer standardises each
    batch with ``mean`` and ``std``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    in_chans: int
    resolution: int
    mean: tuple[float, ...]  # per channel, in [0, 1] units, from the training split
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())
    split: dict = field(default_factory=dict)  # how the validation images were chosen

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    def describe(self) -> dict:
        return {"name": self.name, "train": self.n_train, "val": self.n_val, "num_classes": self.num_classes,
                "in_chans": self.in_chans, "resolution": self.resolution,
                "classes": list(self.classes) or None, "split": self.split, "streamed": False}
