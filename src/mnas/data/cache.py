"""The low-resolution cache of a streamed dataset: decoded once into uint8 (N, 3, R, R) in a file that
every trial and every process on the machine maps into memory (``numpy.memmap``, copy-on-write), so
they share the operating system's page cache instead of each holding a private copy (like the
downsampled-ImageNet variants used for cheap proxies).

A cache is a folder: ``images.u8`` (the raw array, training images first, then validation),
``labels.npy`` and ``meta.json`` (its source, resolution, split, classes, mean/std, skipped files, and
the source's identity). It is refused for another source, resolution or split, and when the source
at its path is no longer the one it was built from (a dataset replaced at the same path: the index's
digest differs; the source's size and modification times tell cheaply that it did not change; a
source that is gone is no objection, the cache is read on its own). Every file is checked before use
(``meta.json`` by a schema, the array's size, the labels' dtype, length and range): a damaged cache is
one line naming the command that rebuilds it (``mnas data cache ... --rebuild``). It is written to a
temporary folder and renamed, so trials that start together never read half a cache.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import ConfigDict, Field

from mnas import MnasError, __version__
from mnas.data.base import DEFAULT_HOLDOUT
from mnas.data.base import Dataset
from mnas.data.imagefolder import open_imagefolder, stamp
from mnas.data.streaming import DecodedImages, Stream, collate
from mnas.schema import Schema, validate

log = logging.getLogger(__name__)

FORMAT = 2  # 2: the source's identity
BATCH = 256
FILES = ("meta.json", "images.u8", "labels.npy")
MAX_META_BYTES = 64 * 2 ** 20  # a million class names


Unit = Annotated[float, Field(ge=0, le=1)]
Spread = Annotated[float, Field(gt=0, le=1)]


class SourceIdentity(Schema):
    """What the cache was built from (``ImageIndex.identity``)."""

    path: str
    kind: Literal["folder", "zip", "tar"]
    images: int = Field(ge=0)
    digest: str = Field(pattern="^[0-9a-f]{64}$")
    stamps: dict[str, tuple[int, int] | None]


class CacheMeta(Schema):
    """``meta.json``: every field a reader uses, with its type and range."""

    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")
    format: Literal[2]
    source: str
    resolution: int = Field(ge=4, le=4096)
    split: dict[str, str | int | float]
    classes: list[str] = Field(min_length=2)
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=0)
    mean: tuple[Unit, Unit, Unit]
    std: tuple[Spread, Spread, Spread]
    skipped: int = Field(ge=0)
    skipped_files: list[str]
    identity: SourceIdentity
    mnas: str


def is_cache(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / "meta.json").is_file()


def build_cache(stream: Stream, folder: str | Path, workers: int = 2, max_bad_fraction: float = 0.01,
                rebuild: bool = False) -> Path:
    """Decode every image of ``stream`` (its centre square at its resolution) into the cache ``folder``;
    ``rebuild``: replace the cache (or the remains of one) already there."""
    folder = Path(folder).expanduser().resolve()
    if rebuild and folder.exists() and not _looks_like_cache(folder):
        raise MnasError(f"{folder} is not a cache (it holds other files): give a new folder or an old cache")
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    r, started = stream.resolution, time.perf_counter()
    total = stream.n_train + stream.n_val
    images = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(total, 3, r, r))
    labels, bad, done, n_train = [], [], 0, 0
    sums = np.zeros((2, 3))  # the training images' per-channel sum and sum of squares, for mean/std
    for part, rows in enumerate((stream.train_rows, stream.val_rows)):
        loader = torch.utils.data.DataLoader(DecodedImages(stream.index, rows, r, train=False),
                                             batch_size=BATCH, num_workers=workers, collate_fn=collate)
        for x, y, names in loader:
            images[done:done + len(x)] = x.numpy()
            labels.append(y.numpy())
            bad += names
            done += len(x)
            if part == 0:
                pixels = x.numpy().transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
                sums += (pixels.sum(1), np.square(pixels).sum(1))
        n_train = done if part == 0 else n_train
    if len(bad) > max_bad_fraction * total:
        shutil.rmtree(tmp, ignore_errors=True)
        raise MnasError(f"{len(bad)} of {total} images of {stream.name} could not be decoded (more than "
                        f"max_bad_fraction {max_bad_fraction:g}), e.g. {', '.join(bad[:3])}")
    images.flush()
    del images
    os.truncate(tmp / "images.u8", done * 3 * r * r)  # skipped images leave unused rows at the end
    np.save(tmp / "labels.npy", np.concatenate(labels).astype(np.int64))
    count = max(1, n_train * r * r)
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean ** 2, 1e-6))
    meta = {"format": FORMAT, "source": stream.name, "resolution": r, "split": stream.split,
            "classes": list(stream.classes), "n_train": n_train, "n_val": done - n_train,
            "mean": mean.tolist(), "std": std.tolist(), "skipped": len(bad), "skipped_files": bad[:20],
            "identity": stream.index.identity(), "mnas": __version__}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    if rebuild and folder.exists():
        folder.rename(old)  # processes that mapped the old files keep reading them
    try:
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except OSError:  # another process built it first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_cache(folder):
            raise MnasError(f"cannot create the cache folder {folder}: it exists and is not a cache") from None
    log.info("cached %s at %d px in %s: %d images (%d skipped) in %.1f s", stream.name, r, folder, done,
             len(bad), time.perf_counter() - started)
    return folder


def _looks_like_cache(folder: Path) -> bool:
    """Holds nothing but a cache's files (what ``--rebuild`` may replace)."""
    return folder.is_dir() and all(f.name in FILES for f in folder.iterdir())


def matches(split: dict, holdout: int | float | None, seed: int) -> bool:
    """Whether a cache's ``split`` is the one a run that asks for ``holdout`` and ``seed`` would make."""
    if "folder" in split:
        return holdout is None
    return split.get("holdout") == (DEFAULT_HOLDOUT if holdout is None else holdout) and split.get("seed") == seed


def rebuild_command(folder: Path, source: str, resolution: int, holdout: int | float | None, seed: int) -> str:
    extra = (f" --holdout {holdout}" if holdout is not None else "") + (f" --seed {seed}" if seed else "")
    return (f"mnas data cache {shlex.quote(source)} --resolution {resolution} --dir {shlex.quote(str(folder))}"
            f"{extra} --rebuild")


def _line(e: BaseException) -> str:
    """An error's message as part of one line."""
    return " ".join(str(e).split())[:160]


def open_cache(folder: str, source: str, resolution: int, holdout: int | float | None, seed: int) -> Dataset:
    """The cache as an in-memory ``Dataset`` whose tensors are views of the mapped file; refused when it
    holds another source, resolution or split, when it is damaged, or when its source has changed since
    (checked on every call: a few ``stat`` calls; the files are read once per process while unchanged)."""
    path = Path(folder).expanduser()
    rebuild = rebuild_command(path, source, resolution, holdout, seed)
    if not is_cache(path):
        if path.is_dir() and any((path / f).exists() for f in FILES):
            raise MnasError(f"cache {path} is damaged (meta.json is missing): rebuild it with '{rebuild}'")
        raise MnasError(f"no cache at {path}: build it with 'mnas data cache', or set proxy.cache to build it "
                        "on first use")
    files = tuple(_file_key(path / f) for f in FILES)  # a rebuilt cache has new files: read it again
    data, identity = _open_files(str(path), source, resolution, holdout, seed, files)
    _check_source(path, identity, rebuild)
    return data


def _file_key(path: Path) -> tuple[int, ...] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _open_files(folder: str, source: str, resolution: int, holdout: int | float | None, seed: int,
                files: tuple) -> tuple[Dataset, SourceIdentity]:
    path = Path(folder)
    rebuild = rebuild_command(path, source, resolution, holdout, seed)
    meta = _read_meta(path, rebuild)
    if (meta.source, meta.resolution) != (source, resolution) or not matches(meta.split, holdout, seed):
        raise MnasError(f"cache {path} holds {meta.source} at {meta.resolution} px, split {meta.split}; "
                        f"this run asks for {source} at {resolution} px, holdout {holdout}, seed {seed}: use "
                        "another cache folder")
    n_train, n_val, r = meta.n_train, meta.n_val, meta.resolution
    x, y = _read_arrays(path, n_train + n_val, r, len(meta.classes), rebuild)
    log.info("opened cache %s: %s at %d px, %d train, %d val images", path, source, r, n_train, n_val)
    data = Dataset(source, torch.from_numpy(x[:n_train]), y[:n_train], torch.from_numpy(x[n_train:]), y[n_train:],
                   len(meta.classes), 3, r, meta.mean, meta.std, tuple(meta.classes),
                   {**meta.split, "cache": str(path)})
    return data, meta.identity


def _read_meta(path: Path, rebuild: str) -> CacheMeta:
    damaged = f"cache {path} is damaged"
    try:
        with open(path / "meta.json", "rb") as f:
            text = f.read(MAX_META_BYTES + 1)
        if len(text) > MAX_META_BYTES:
            raise ValueError("meta.json is too large")
        data = json.loads(text)
    except (OSError, ValueError, RecursionError) as e:  # unreadable, not UTF-8, not JSON, nested too deep
        raise MnasError(f"{damaged} (meta.json: {_line(e)}): rebuild it with '{rebuild}'") from None
    if not isinstance(data, dict):
        raise MnasError(f"{damaged} (meta.json is not an object): rebuild it with '{rebuild}'")
    if data.get("format") != FORMAT:
        raise MnasError(f"cache {path} is of format {str(data.get('format'))[:20]}; this mnas reads format "
                        f"{FORMAT}: rebuild it with '{rebuild}'")
    try:
        return validate(CacheMeta, data, "meta.json")
    except MnasError as e:
        raise MnasError(f"{damaged} ({_line(e)}): rebuild it with '{rebuild}'") from None


def _check_source(path: Path, identity: SourceIdentity, rebuild: str) -> None:
    """Refuse a cache whose source, still at its path, is no longer the data it was built from."""
    if not os.path.exists(identity.path):
        log.info("cache %s: its source %s is gone; reading the cache on its own", path, identity.path)
        return
    now = {f: stamp(os.path.join(identity.path, f) if f else identity.path) for f in identity.stamps}
    if all(now[f] is not None and tuple(now[f]) == v for f, v in identity.stamps.items()):
        return  # nothing was added, removed or rewritten since: no need to read the index again
    try:
        index = open_imagefolder(identity.path)
        same = index.kind == identity.kind and index.identity()["digest"] == identity.digest
        found = f"{len(index)} images"
    except MnasError as e:
        same, found = False, _line(e)
    if not same:
        raise MnasError(f"cache {path} was built from another dataset at {identity.path} ({identity.images} "
                        f"images; now {found}): rebuild it with '{rebuild}'")


def _read_arrays(path: Path, total: int, r: int, classes: int, rebuild: str) -> tuple[np.ndarray, torch.Tensor]:
    damaged, fix = f"cache {path} is damaged", f"rebuild it with '{rebuild}'"
    try:
        size = (path / "images.u8").stat().st_size
    except OSError as e:
        raise MnasError(f"{damaged} (images.u8: {e.strerror}): {fix}") from None
    if size != total * 3 * r * r:
        raise MnasError(f"{damaged} (images.u8 holds {size} bytes; meta.json says {total} images of 3 x {r} x {r}, "
                        f"{total * 3 * r * r} bytes): {fix}")
    try:
        # mapped, not read: a header may claim any shape; an .npy only (np.load would open a zip too)
        labels = np.lib.format.open_memmap(path / "labels.npy", mode="r")
        if labels.dtype.kind not in "iu" or labels.shape != (total,):
            raise ValueError(f"{labels.dtype} {labels.shape}, not {total} integer labels")
        y = np.array(labels, dtype=np.int64)
    except (OSError, ValueError, EOFError, OverflowError) as e:  # OverflowError: a shape past mmap
        raise MnasError(f"{damaged} (labels.npy: {_line(e)}): {fix}") from None
    if y.min() < 0 or y.max() >= classes:
        raise MnasError(f"{damaged} (labels.npy holds labels {y.min()}..{y.max()} for {classes} classes): {fix}")
    x = np.memmap(path / "images.u8", dtype=np.uint8, mode="c", shape=(total, 3, r, r))
    return x, torch.from_numpy(y)
