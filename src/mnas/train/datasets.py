"""Proxy-task datasets, named by a spec string, held in memory as uint8 tensors at the proxy resolution.

A spec is ``NAME`` or ``NAME:PATH``; the names are a registry (entry-point group ``mnas.datasets``) of
loaders: the built-ins are in sources.py (``animal-mnist``, the default, ``mnist-5k``, ``digits``,
``imagefolder:PATH``, ``cifar10:PATH``, ``cifar100:PATH``, ``npz:PATH``), a plugin adds its own.
The validation split is held out from the *training* data (the paper holds 50K ImageNet training images
out), stratified per class and fixed by the seed. Images are resized once, when loaded; loads are cached
in-process because a search trains many models on the same data.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnas import MnasError
from mnas.registry import Registry

log = logging.getLogger(__name__)

Loader = Callable[[str | None, int], tuple[np.ndarray, np.ndarray, list[str]]]  # see sources.py

DATASETS: Registry[Loader] = Registry("dataset", "mnas.datasets", builtins={
    "animal-mnist": "mnas.train.sources:animal_mnist",
    "mnist-5k": "mnas.train.sources:mnist_5k",
    "digits": "mnas.train.sources:digits",
    "imagefolder": "mnas.train.sources:imagefolder",
    "cifar10": "mnas.train.sources:cifar10",
    "cifar100": "mnas.train.sources:cifar100",
    "npz": "mnas.train.sources:npz",
}, hint="A spec is NAME or NAME:PATH ('mnas data list').")


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

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_val(self) -> int:
        return len(self.y_val)

    def describe(self) -> dict:
        return {"name": self.name, "train": self.n_train, "val": self.n_val, "num_classes": self.num_classes,
                "in_chans": self.in_chans, "resolution": self.resolution,
                "classes": list(self.classes) or None}


def list_datasets() -> list[dict]:
    """Every registered name with its spec form, description and whether what it needs is installed."""
    items = []
    for name in DATASETS.names():
        try:
            loader = DATASETS.get(name)
        except MnasError as e:  # a plugin that does not import
            items.append({"name": name, "spec": name, "description": str(e), "available": False})
            continue
        requires = getattr(loader, "requires", None)
        items.append({"name": name, "spec": f"{name}:PATH" if _takes_path(loader) else name,
                      "description": (inspect.getdoc(loader) or "").partition("\n")[0],
                      "available": requires is None or importlib.util.find_spec(requires) is not None})
    return items


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:PATH`` -> (name, path), checked against what the loader takes."""
    name, _, path = spec.strip().partition(":")
    name = name.lower()
    takes_path = _takes_path(DATASETS.get(name))
    if takes_path and not path:
        raise MnasError(f"dataset {name} needs a path: {name}:PATH")
    if not takes_path and path:
        raise MnasError(f"dataset {name} takes no path (got {spec!r})")
    return name, path or None


def _takes_path(loader: Loader) -> bool:
    return bool(getattr(loader, "takes_path", False))


def load_dataset(spec: str, resolution: int, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load (cached in-process) a dataset at ``resolution`` with a stratified held-out validation split."""
    name, path = parse_spec(spec)
    if resolution < 4:
        raise MnasError(f"resolution must be >= 4, got {resolution}")
    if not 0.0 < val_fraction < 1.0:
        raise MnasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if path is not None:
        path = str(Path(path).expanduser().resolve())
    return _load_cached(name, path, int(resolution), float(val_fraction), int(seed))


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, path: str | None, resolution: int, val_fraction: float, seed: int) -> Dataset:
    x, y, names = DATASETS.get(name)(path, resolution)
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or y.ndim != 1 or len(y) != len(x):
        raise MnasError(f"dataset {name}'s loader returned images {x.dtype} {x.shape} and labels {y.shape}: "
                        "expected uint8 (N, H, W) or (N, H, W, C) and N integer labels")
    if len(x) < 2:
        raise MnasError(f"dataset {name} has {len(x)} image(s); need at least 2")
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    t = resize_uint8(t, resolution)
    train_idx, val_idx = stratified_split(y, val_fraction, seed)
    labels = torch.from_numpy(y)
    x_train = t[train_idx].contiguous()
    xf = x_train.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    num_classes = max(int(y.max()) + 1, len(names))
    full_name = name if path is None else f"{name}:{path}"
    log.info("loaded dataset %s at %d px: %d train, %d val images", full_name, resolution, len(train_idx),
             len(val_idx))
    return Dataset(full_name, x_train, labels[train_idx].contiguous(), t[val_idx].contiguous(),
                   labels[val_idx].contiguous(), num_classes, int(t.shape[1]), resolution, mean, std,
                   tuple(names[:num_classes]))


def resize_uint8(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a uint8 (N, C, H, W) batch once, in chunks (antialiased when shrinking)."""
    if x.shape[-2:] == (resolution, resolution):
        return x
    out = torch.empty((x.shape[0], x.shape[1], resolution, resolution), dtype=torch.uint8)
    for i in range(0, len(x), 2048):
        chunk = x[i:i + 2048].float()
        r = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < min(x.shape[-2:]))
        out[i:i + 2048] = r.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, a seeded permutation; the first round(fraction * count) go to validation.
    Both index lists come back sorted, so the split does not depend on the order of classes."""
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    train: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        val.append(idx[:k])
        train.append(idx[k:])
    tr, va = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if len(va) == 0 or len(tr) == 0:
        raise MnasError("too few images to hold out a validation split")
    return torch.from_numpy(tr), torch.from_numpy(va)
