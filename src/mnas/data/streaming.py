"""Streamed image datasets: an ``ImageIndex`` split into train and validation rows, decoded and cropped
per batch in DataLoader worker processes, so memory does not grow with the number of images.

A broken image (truncated, corrupt, not really an image) comes back from its worker as a marker with
its name: the batch is a little smaller, and the feed counts it (feeds.py).
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mnas.data.imagefolder import ImageIndex
from mnas.data.transforms import pil_eval, pil_train

STATS_SAMPLE = 256  # images decoded to estimate the per-channel mean/std of a streamed training split


@dataclass(frozen=True, eq=False)
class Stream:
    """A streamed dataset: which index rows train and which validate, and what the trainer needs to
    know about them (the same fields as an in-memory ``Dataset``)."""

    name: str
    index: ImageIndex
    train_rows: np.ndarray
    val_rows: np.ndarray
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: dict
    in_chans: int = 3  # grey, CMYK, palette and alpha images are all made RGB

    @property
    def classes(self) -> tuple[str, ...]:
        return self.index.classes

    @property
    def num_classes(self) -> int:
        return len(self.index.classes)

    @property
    def n_train(self) -> int:
        return len(self.train_rows)

    @property
    def n_val(self) -> int:
        return len(self.val_rows)

    def describe(self) -> dict:
        return {"name": self.name, "train": self.n_train, "val": self.n_val, "num_classes": self.num_classes,
                "in_chans": self.in_chans, "resolution": self.resolution, "classes": list(self.classes),
                "split": self.split, "streamed": True, "ignored_files": self.index.ignored}


class DecodedImages(torch.utils.data.Dataset):
    """What a worker runs: read a member, decode it, crop it. A training key is (position, seed): the
    seed fixes the crop and flip, so augmentation depends on the run's seed, not on which worker ran."""

    def __init__(self, index: ImageIndex, rows: np.ndarray, resolution: int, train: bool, min_area: float = 0.0,
                 hflip: bool = False, eval_crop: float = 1.0) -> None:
        self.index, self.rows, self.resolution = index, rows, resolution
        self.train, self.min_area, self.hflip, self.eval_crop = train, min_area, hflip, eval_crop

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> tuple[torch.Tensor | None, int, str]:
        position, seed = key if self.train else (key, 0)
        row = int(self.rows[position])
        if self.train:
            rng = np.random.default_rng([seed, position])
            out = decode(self.index, row, lambda im: pil_train(im, self.resolution, self.min_area, self.hflip, rng))
        else:
            out = decode(self.index, row, lambda im: pil_eval(im, self.resolution, self.eval_crop))
        if out is None:
            return None, -1, self.index.name(row)
        return torch.from_numpy(out), int(self.index.labels[row]), ""


def decode(index: ImageIndex, row: int, transform: Callable) -> np.ndarray | None:
    """``transform`` of a row's image (it decodes it: a JPEG's draft scale must be set before), or None
    when the row is not a readable image."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF and palette warnings, once per image, in every worker
            return transform(Image.open(io.BytesIO(index.read(row))))
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError):
        return None


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The decodable images as one uint8 batch, their labels, and the names of those that were not."""
    good = [(x, y) for x, y, _ in items if x is not None]
    bad = [name for x, _, name in items if x is None]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


def estimate_stats(index: ImageIndex, rows: np.ndarray, resolution: int, seed: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std (in [0, 1] units) of a seeded sample of the training rows, centre squares
    at the proxy resolution: an estimate, so the whole split is never decoded for it."""
    rng = np.random.default_rng(seed)
    sample = rng.choice(rows, size=min(STATS_SAMPLE, len(rows)), replace=False)
    crops = (decode(index, int(row), lambda im: pil_eval(im, resolution, 1.0)) for row in sample)
    pixels = [c.reshape(3, -1) for c in crops if c is not None]
    if not pixels:
        return (0.5,) * 3, (0.25,) * 3
    x = np.concatenate(pixels, axis=1).astype(np.float64) / 255.0
    return tuple(float(v) for v in x.mean(1)), tuple(max(float(v), 1e-3) for v in x.std(1))
