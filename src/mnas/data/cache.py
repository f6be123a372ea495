"""The low-resolution cache of a streamed dataset: decoded once into uint8 (N, 3, R, R) in a file that
every trial and every process on the machine maps into memory (``numpy.memmap``, copy-on-write), so
they share the operating system's page cache instead of each holding a private copy (like the
downsampled-ImageNet variants used for cheap proxies).

A cache is a folder: ``images.u8`` (the raw array, training images first, then validation),
``labels.npy`` and ``meta.json`` (its source, resolution, split, classes, mean/std, skipped files). It
is refused for another source, resolution or split. It is written to a temporary folder and renamed, so
trials that start together never read half a cache.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from mnas import MnasError, __version__
from mnas.data.base import DEFAULT_HOLDOUT
from mnas.data.base import Dataset
from mnas.data.streaming import DecodedImages, Stream, collate

log = logging.getLogger(__name__)

FORMAT = 1
BATCH = 256


def is_cache(folder: str | Path) -> bool:
    return (Path(folder).expanduser() / "meta.json").is_file()


def build_cache(stream: Stream, folder: str | Path, workers: int = 2, max_bad_fraction: float = 0.01) -> Path:
    """Decode every image of ``stream`` (its centre square at its resolution) into the cache ``folder``."""
    folder = Path(folder).expanduser().resolve()
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
            "mnas": __version__}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        tmp.rename(folder)
    except OSError:  # another process built it first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_cache(folder):
            raise MnasError(f"cannot create the cache folder {folder}: it exists and is not a cache") from None
    log.info("cached %s at %d px in %s: %d images (%d skipped) in %.1f s", stream.name, r, folder, done,
             len(bad), time.perf_counter() - started)
    return folder


def matches(split: dict, holdout: int | float | None, seed: int) -> bool:
    """Whether a cache's ``split`` is the one a run that asks for ``holdout`` and ``seed`` would make."""
    if "folder" in split:
        return holdout is None
    return split["holdout"] == (DEFAULT_HOLDOUT if holdout is None else holdout) and split["seed"] == seed


@functools.lru_cache(maxsize=8)
def open_cache(folder: str, source: str, resolution: int, holdout: int | float | None, seed: int) -> Dataset:
    """The cache as an in-memory ``Dataset`` whose tensors are views of the mapped file; refused when it
    holds another source, resolution or split."""
    path = Path(folder).expanduser()
    if not is_cache(path):
        raise MnasError(f"no cache at {path}: build it with 'mnas data cache', or set proxy.cache to build it "
                        "on first use")
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise MnasError(f"cache {path} is of format {meta.get('format')}; this mnas reads format {FORMAT}: "
                        "rebuild it with mnas data cache")
    if (meta["source"], meta["resolution"]) != (source, resolution) or not matches(meta["split"], holdout, seed):
        raise MnasError(f"cache {path} holds {meta['source']} at {meta['resolution']} px, split {meta['split']}; "
                        f"this run asks for {source} at {resolution} px, holdout {holdout}, seed {seed}: use "
                        "another cache folder")
    n_train, n_val, r = meta["n_train"], meta["n_val"], meta["resolution"]
    x = np.memmap(path / "images.u8", dtype=np.uint8, mode="c", shape=(n_train + n_val, 3, r, r))
    y = torch.from_numpy(np.load(path / "labels.npy"))
    log.info("opened cache %s: %s at %d px, %d train, %d val images", path, source, r, n_train, n_val)
    return Dataset(source, torch.from_numpy(x[:n_train]), y[:n_train], torch.from_numpy(x[n_train:]), y[n_train:],
                   len(meta["classes"]), 3, r, tuple(meta["mean"]), tuple(meta["std"]), tuple(meta["classes"]),
                   {**meta["split"], "cache": str(path)})
