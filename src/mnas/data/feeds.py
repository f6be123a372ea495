"""How batches reach the trainer: standardised float batches on the device, epoch by epoch, and the
validation batches, from either data path.

``MemoryFeed``: an in-memory (or memory-mapped) uint8 tensor indexed per batch, augmented on the device
(the fast path: no workers competing for the cores). ``StreamFeed``: a ``DataLoader`` whose worker
processes read, decode and crop the images (streaming.py); it counts images that do not decode and
fails the run past ``max_bad_fraction``. Both apply the same preprocessing (transforms.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Optional, Protocol

import torch

from mnas import MnasError
from mnas.data.base import Dataset
from mnas.data.streaming import DecodedImages, Stream, collate
from mnas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, batch_centre_crop, batch_crops

log = logging.getLogger(__name__)



class FeedSettings(Protocol):
    """What a feed reads of a training config (``mnas.train.TrainConfig`` has these fields): the data layer
    sits below training and never imports it."""

    batch_size: int
    eval_batch_size: int
    resolution: int
    train_limit: Optional[int]
    normalize: str
    crop_min_area: float
    hflip: bool
    eval_crop: float
    workers: int
    max_bad_fraction: float


Prepare = Callable[[torch.Tensor], torch.Tensor]  # a uint8 batch -> the model's standardised input
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
# Evaluation activations grow with the pixels: batches hold at most as many pixels as 1,000 images of
# 56 px (1,000 images at the proxy's 28-32 px, 62 at 224 px).
EVAL_PIXELS = 1000 * 56 * 56


def batch_preparer(data: Dataset | Stream, device: torch.device, memory_format: torch.memory_format,
                   normalize: str = "dataset") -> Prepare:
    """uint8 batches -> float32 standardised with the training split's per-channel statistics, or with
    ImageNet's (``normalize="imagenet"``; their average for grey images)."""
    mean_, std_ = normalisation(data, normalize)
    mean = torch.tensor(mean_, device=device).view(1, -1, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(std_, device=device).view(1, -1, 1, 1) * 255.0)

    def prepare(xb: torch.Tensor) -> torch.Tensor:
        return ((xb.float() - mean) * inv_std).contiguous(memory_format=memory_format)

    return prepare


def normalisation(data: Dataset | Stream, normalize: str = "dataset") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel in [0, 1] units: the training split's, or ImageNet's constants (their
    average for grey images)."""
    if normalize == "imagenet":
        return (IMAGENET_MEAN, IMAGENET_STD) if data.in_chans == 3 else \
            ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
    return tuple(data.mean), tuple(data.std)


def eval_batch_size(cfg: FeedSettings) -> int:
    return max(1, min(cfg.eval_batch_size, EVAL_PIXELS // (cfg.resolution * cfg.resolution)))


class MemoryFeed:
    def __init__(self, data: Dataset, cfg: FeedSettings, device: torch.device, memory_format: torch.memory_format,
                 generator: torch.Generator) -> None:
        x, y = data.x_train, data.y_train
        if cfg.train_limit is not None and cfg.train_limit < len(y):
            keep = torch.randperm(len(y), generator=generator)[:cfg.train_limit].sort().values
            x, y = x[keep], y[keep]
        self.data, self.cfg, self.device, self.fmt, self.generator = data, cfg, device, memory_format, generator
        self.x, self.y = x.to(device), y.to(device)
        self.n_train, self.skipped = len(y), 0
        self.prepare = batch_preparer(data, device, memory_format, cfg.normalize)

    def epoch(self, batch_size: int, steps: int) -> Batches:
        perm = torch.randperm(self.n_train, generator=self.generator).to(self.device)
        for k in range(steps):
            idx = perm[k * batch_size:(k + 1) * batch_size]
            xb = self.prepare(self.x[idx])
            if self.cfg.crop_min_area > 0:
                xb = batch_crops(xb, self.cfg.crop_min_area, self.cfg.hflip, self.generator)
            elif self.cfg.hflip:
                flip = (torch.rand(len(idx), generator=self.generator) < 0.5).to(self.device)
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            yield xb.contiguous(memory_format=self.fmt), self.y[idx]

    def val(self) -> Batches:
        bs, d = eval_batch_size(self.cfg), self.data
        for i in range(0, d.n_val, bs):
            xb = batch_centre_crop(self.prepare(d.x_val[i:i + bs].to(self.device)), self.cfg.eval_crop)
            yield xb.contiguous(memory_format=self.fmt), d.y_val[i:i + bs].to(self.device)

    def close(self) -> None:
        pass


class EpochBatches(torch.utils.data.Sampler):
    """The batch sampler of a streamed run, iterated in the main process once per epoch: the first
    ``steps`` batches of a seeded permutation, each key (position, epoch seed)."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.batch_size, self.generator, self.steps = n, batch_size, generator, 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        seed = int(torch.randint(2 ** 62, (1,), generator=self.generator))
        for k in range(self.steps):
            yield [(i, seed) for i in perm[k * self.batch_size:(k + 1) * self.batch_size]]


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # a worker decodes; torch ops in it would only compete for the cores


class StreamFeed:
    def __init__(self, data: Stream, cfg: FeedSettings, device: torch.device, memory_format: torch.memory_format,
                 generator: torch.Generator) -> None:
        rows = data.train_rows
        if cfg.train_limit is not None and cfg.train_limit < len(rows):
            rows = rows[torch.randperm(len(rows), generator=generator)[:cfg.train_limit].sort().values.numpy()]
        self.data, self.cfg, self.device, self.n_train = data, cfg, device, len(rows)
        self.prepare = batch_preparer(data, device, memory_format, cfg.normalize)
        self.sampler = EpochBatches(len(rows), 1, generator)
        self.skipped_names: set[str] = set()
        self.limit = cfg.max_bad_fraction * (data.n_train + data.n_val)
        self.train_images = DecodedImages(data.index, rows, data.resolution, True, cfg.crop_min_area, cfg.hflip)
        self.train_loader: torch.utils.data.DataLoader | None = None

    @property
    def skipped(self) -> int:
        return len(self.skipped_names)

    def _loader(self, images: DecodedImages, **kw) -> torch.utils.data.DataLoader:
        workers = self.cfg.workers
        return torch.utils.data.DataLoader(images, num_workers=workers, collate_fn=collate,
                                           pin_memory=self.device.type == "cuda", worker_init_fn=_one_thread,
                                           prefetch_factor=4 if workers else None, **kw)

    def _to_device(self, x: torch.Tensor, y: torch.Tensor, bad: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        for name in set(bad) - self.skipped_names:
            log.warning("skipped %s in %s: not a readable image", name, self.data.name)
        self.skipped_names.update(bad)
        if len(self.skipped_names) > self.limit:
            names = sorted(self.skipped_names)
            raise MnasError(f"{len(names)} of {self.data.n_train + self.data.n_val} images of {self.data.name} could "
                            f"not be decoded (more than "
                            f"max_bad_fraction {self.cfg.max_bad_fraction:g}), e.g. {', '.join(names[:3])}")
        return self.prepare(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)

    def epoch(self, batch_size: int, steps: int) -> Batches:
        self.sampler.batch_size, self.sampler.steps = batch_size, steps
        if self.train_loader is None:  # first epoch, or the first after an evaluation closed it
            self.train_loader = self._loader(self.train_images, batch_sampler=self.sampler,
                                             persistent_workers=self.cfg.workers > 0)
        for x, y, bad in self.train_loader:
            xb, yb = self._to_device(x, y, bad)
            if len(yb) >= 2:  # BatchNorm needs two; a batch of broken images is dropped
                yield xb, yb

    def val(self) -> Batches:
        self.close()  # the training workers are done: the evaluation's get the cores
        images = DecodedImages(self.data.index, self.data.val_rows, self.data.resolution, False,
                               eval_crop=self.cfg.eval_crop)
        for x, y, bad in self._loader(images, batch_size=eval_batch_size(self.cfg)):
            xb, yb = self._to_device(x, y, bad)
            if len(yb):
                yield xb, yb

    def close(self) -> None:
        self.train_loader = None  # its persistent workers exit with its iterator


def make_feed(data: Dataset | Stream, cfg: FeedSettings, device: torch.device, memory_format: torch.memory_format,
              generator: torch.Generator) -> MemoryFeed | StreamFeed:
    feed = (StreamFeed if isinstance(data, Stream) else MemoryFeed)(data, cfg, device, memory_format, generator)
    if feed.n_train < 2:
        raise MnasError(f"too few training images ({feed.n_train}) for batch size {cfg.batch_size}")
    return feed
