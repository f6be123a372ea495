"""Proxy-task datasets, named by a spec string: small sets held in memory as uint8 tensors at the proxy
resolution (``Dataset``), image folders and archives streamed (``Stream``, streaming.py) or read from a
memory-mapped cache (cache.py, an in-memory ``Dataset`` whose tensors are the mapped file).

A spec is ``NAME`` or ``NAME:PATH``; the names are a registry (entry-point group ``mnas.datasets``) of
loaders: the built-ins are in sources.py (``animal-mnist``, the default, ``mnist-5k``, ``digits``,
``imagefolder:PATH``, ``cifar10:PATH``, ``cifar100:PATH``, ``npz:PATH``), a plugin adds its own.
The validation split is the source's own val/ or test/ folder, or held out from the *training* data (the
paper holds 50K ImageNet training images out): a count or a fraction, stratified per class and fixed by
the seed. In-memory images are resized once, when loaded; loads are cached in-process because a search
trains many models on the same data.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnas import MnasError
from mnas.registry import Registry
from mnas.data.base import DEFAULT_HOLDOUT, Dataset
from mnas.data.cache import open_cache
from mnas.data.imagefolder import ImageIndex
from mnas.data.streaming import Stream, estimate_stats

log = logging.getLogger(__name__)

Loader = Callable[[str | None, int], "tuple[np.ndarray, np.ndarray, list[str]] | ImageIndex"]  # sources.py
Holdout = int | float | None  # a count, a fraction, or None: the source's val/ folder, else DEFAULT_HOLDOUT

DATASETS: Registry[Loader] = Registry("dataset", "mnas.datasets", builtins={
    "animal-mnist": "mnas.data.sources:animal_mnist",
    "mnist-5k": "mnas.data.sources:mnist_5k",
    "digits": "mnas.data.sources:digits",
    "imagefolder": "mnas.data.sources:imagefolder",
    "cifar10": "mnas.data.sources:cifar10",
    "cifar100": "mnas.data.sources:cifar100",
    "npz": "mnas.data.sources:npz",
}, hint="A spec is NAME or NAME:PATH ('mnas data list').")


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


def load_dataset(spec: str, resolution: int, holdout: Holdout = None, seed: int = 0,
                 cache: str | None = None) -> Dataset | Stream:
    """Load (cached in-process) a dataset at ``resolution`` with its validation split: held out of the
    training images when ``holdout`` is set (or the source has no val/ or test/ folder). ``cache``: read
    it from this memory-mapped cache folder instead (``build_cache``; ``mnas.train.load_proxy_data`` builds it)."""
    name, path = parse_spec(spec)
    if resolution < 4:
        raise MnasError(f"resolution must be >= 4, got {resolution}")
    if isinstance(holdout, float) and not 0.0 < holdout < 1.0 or isinstance(holdout, int) and holdout < 1:
        raise MnasError(f"holdout must be a count >= 1 or a fraction in (0, 1), got {holdout}")
    if path is not None:
        path = str(Path(path).expanduser().resolve())
    if cache is not None:
        source = name if path is None else f"{name}:{path}"
        return open_cache(str(Path(cache).expanduser().resolve()), source, int(resolution), holdout, int(seed))
    return _load_cached(name, path, int(resolution), holdout, int(seed), _stamp(path))


def _stamp(path: str | None) -> tuple[int, ...] | None:
    """Part of the in-process cache's key: a file replaced at the same path is loaded again."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return st and (st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, path: str | None, resolution: int, holdout: Holdout, seed: int,
                 stamp: tuple | None = None) -> Dataset | Stream:
    loaded = DATASETS.get(name)(path, resolution)
    full_name = name if path is None else f"{name}:{path}"
    if isinstance(loaded, ImageIndex):
        return _stream(full_name, loaded, resolution, holdout, seed)
    x, y, names = loaded
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or y.ndim != 1 or len(y) != len(x):
        raise MnasError(f"dataset {name}'s loader returned images {x.dtype} {x.shape} and labels {y.shape}: "
                        "expected uint8 (N, H, W) or (N, H, W, C) and N integer labels")
    if len(x) < 2:
        raise MnasError(f"dataset {name} has {len(x)} image(s); need at least 2")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise MnasError(f"dataset {name}'s labels must be non-negative integers")
    if len(np.unique(y)) < 2:
        raise MnasError(f"dataset {full_name} has images of one class only ({int(y[0])}): a classifier needs at "
                        "least two classes (top-1 would be 1.0 whatever the network)")
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    t = resize_uint8(t, resolution)
    held = DEFAULT_HOLDOUT if holdout is None else holdout
    train_idx, val_idx = stratified_split(y, held, seed)
    labels = torch.from_numpy(y)
    x_train = t[train_idx].contiguous()
    xf = x_train.float().div_(255.0)
    mean = tuple(float(v) for v in xf.mean(dim=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in xf.std(dim=(0, 2, 3)))
    num_classes = max(int(y.max()) + 1, len(names))
    log.info("loaded dataset %s at %d px: %d train, %d val images", full_name, resolution, len(train_idx),
             len(val_idx))
    return Dataset(full_name, x_train, labels[train_idx].contiguous(), t[val_idx].contiguous(),
                   labels[val_idx].contiguous(), num_classes, int(t.shape[1]), resolution, mean, std,
                   tuple(names[:num_classes]), {"holdout": held, "seed": seed})


def _stream(name: str, index: ImageIndex, resolution: int, holdout: Holdout, seed: int) -> Stream:
    if holdout is None and index.val_folder is not None:
        train_rows, val_rows = np.flatnonzero(~index.is_val), np.flatnonzero(index.is_val)
        split: dict = {"folder": index.val_folder}
        if len(val_rows) == 0:
            raise MnasError(f"{index.source}: the {index.val_folder}/ folder has no images")
    else:
        held = DEFAULT_HOLDOUT if holdout is None else holdout
        candidates = np.flatnonzero(~index.is_val)
        tr, va = stratified_split(index.labels[candidates], held, seed)
        train_rows, val_rows = candidates[tr.numpy()], candidates[va.numpy()]
        split = {"holdout": held, "seed": seed}
    mean, std = estimate_stats(index, train_rows, resolution, seed)
    log.info("streaming %s at %d px: %d train, %d val images (%s)", name, resolution, len(train_rows),
             len(val_rows), split)
    return Stream(name, index, train_rows, val_rows, resolution, mean, std, split)


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


def stratified_split(y: np.ndarray, holdout: int | float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class, a seeded permutation whose first images go to validation: round(fraction x the class's
    size), or for a count its share of the count (largest remainders, so the total is exact). Every class
    of two or more images keeps at least one on each side. Both index lists come back sorted, so the
    split does not depend on the order of classes."""
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(y, return_counts=True)
    if isinstance(holdout, int):
        if holdout >= len(y):
            raise MnasError(f"cannot hold out {holdout} of {len(y)} training images")
        share = holdout * sizes / len(y)
        quota = np.floor(share).astype(int)
        quota[np.argsort(-(share - quota), kind="stable")[:holdout - quota.sum()]] += 1
    else:
        quota = np.round(holdout * sizes).astype(int)
    val: list[np.ndarray] = []
    train: list[np.ndarray] = []
    for c, size, k in zip(classes, sizes, quota):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(max(k, 1), size - 1) if size >= 2 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    tr, va = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if len(va) == 0 or len(tr) == 0:
        raise MnasError("too few images to hold out a validation split")
    return torch.from_numpy(tr), torch.from_numpy(va)
