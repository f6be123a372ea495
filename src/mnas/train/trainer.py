"""The proxy trainer: train a sampled architecture briefly and report held-out top-1.

One run is built (model, optimizer, lr schedule, EMA, the feed of batches), trained epoch by epoch and
evaluated. Speed choices (measured on a CPU: docs/results/2026-11-25-training-speed.md): channels-last memory format
(about 2x on this model: the depthwise and 1x1 convolutions go to oneDNN's NHWC kernels), small datasets
kept as one uint8 tensor on the device and normalised per batch (feeds.py), large inference-mode
evaluation batches, gradients set to None instead of zeroed. On CUDA: mixed precision (bf16 where
supported, else fp16 with a grad scaler), pinned non-blocking copies of streamed batches, and
``torch.compile`` on request (a search trains each model once, so compile time is paid every trial).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mnas import MnasError
from mnas.model import build, count_params
from mnas.space import zoo
from mnas.space.arch import Architecture
from mnas.train.config import TrainTask, TrainConfig
from mnas.data.base import Dataset
from mnas.data.cache import build_cache, is_cache
from mnas.data.datasets import load_dataset
from mnas.data.feeds import MemoryFeed, StreamFeed, make_feed
from mnas.train.optim import lr_factor, make_optimizer, tf_ema
from mnas.data.streaming import Stream

log = logging.getLogger(__name__)

Progress = Callable[[int, int, float], None]  # (step, total_steps, loss) after every step


@dataclass
class Watch:
    """Intermediate evaluations of a training (pruning): every ``every`` epochs (rounded to whole optimizer
    steps) the held-out top-1 is measured and given to ``report(step, top1)``, step k after k intervals; it
    returns True to stop the training there (the result's status is then "pruned", its top1 that value)."""

    every: float
    report: Callable[[int, float], bool]


def load_proxy_data(proxy: TrainTask, seed: int) -> Dataset | Stream:
    """A search trial's data: ``proxy.dataset`` split by ``seed``; with ``proxy.cache``, that cache,
    built on first use."""
    if proxy.cache is not None:
        if not is_cache(proxy.cache):
            data = load_dataset(proxy.dataset, proxy.resolution, proxy.holdout, seed)
            if not isinstance(data, Stream):
                raise MnasError(f"a cache is for streamed datasets (imagefolder:PATH); {proxy.dataset} is held "
                                "in memory already")
            build_cache(data, proxy.cache, proxy.workers, proxy.max_bad_fraction)
    return load_dataset(proxy.dataset, proxy.resolution, proxy.holdout, seed, proxy.cache)


@dataclass
class TrainResult:
    status: str                             # "ok" | "failed"
    error: Optional[str]
    top1: float                             # held-out top-1 in [0, 1] (0 when failed)
    loss_curve: list[float]                 # mean training loss per epoch (a partial epoch counts)
    train_images_per_s: float
    seconds: float                          # the whole trial: build, train, evaluate
    epochs: float
    params: int
    val_loss: Optional[float] = None
    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    dataset: str = ""
    arch: str = ""
    device: str = ""
    threads: int = 0
    amp: str = "off"                        # the precision the run trained in: off | bf16 | fp16
    # the other speed choices the run trained with (results stored before they were recorded lack them:
    # a reader takes them from ``config``, which every result holds)
    compile: bool = False                   # the model ran through torch.compile
    channels_last: bool = False             # weights and batches in channels-last memory format
    batch_size: int = 0                     # the batch it trained with (the config's, capped at the images)
    started: float = 0.0                    # when the training began (time.time()): overlap of parallel trials
    train_images: int = 0
    intermediate: list = field(default_factory=list)  # [[step, top1], ...] of a watched training (Watch)
    val_images: int = 0
    skipped_images: int = 0                 # streamed images that did not decode
    split: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Run:
    """What one training run works on, built once by ``build_run``."""

    arch: Architecture                      # scaled to the config's width
    model: nn.Module
    forward: nn.Module                      # the model, compiled when asked
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]                   # per param group, multiplied by the schedule each step
    ema: AveragedModel | None
    feed: MemoryFeed | StreamFeed
    amp_dtype: torch.dtype | None           # autocast's dtype on CUDA, None: float32
    scaler: torch.amp.GradScaler | None     # fp16 only
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    decay_steps: float
    generator: torch.Generator | None = None  # batch order and augmentation (a checkpoint saves its state)


def train_architecture(arch: Architecture, proxy: TrainTask, seed: int, watch: Watch | None = None) -> TrainResult:
    """One search trial's training: ``proxy.dataset`` (loaded once per process, or its cache) split and
    trained with ``seed`` in place of ``proxy.seed`` (``watch``: see ``train_proxy``)."""
    return train_proxy(arch, load_proxy_data(proxy, seed), proxy.model_copy(update={"seed": seed}), watch=watch)


def train_proxy(arch: Architecture, data: Dataset | Stream | str, config: TrainConfig | None = None,
                progress: Progress | None = None, watch: Watch | None = None) -> TrainResult:
    """Train ``arch`` (scaled by config.width_multiplier) on ``data`` (a Dataset, a Stream or a spec
    string) and return held-out top-1. A non-finite loss ends the trial with status "failed", not an
    exception; ``watch`` evaluates it on the way and may stop it (status "pruned")."""
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    if isinstance(data, str):
        data = load_dataset(data, cfg.resolution, cfg.holdout, cfg.seed)
    elif data.resolution != cfg.resolution:
        raise MnasError(f"dataset {data.name} is at {data.resolution} px but the config asks for "
                        f"{cfg.resolution} px: load it with load_dataset(spec, {cfg.resolution})")
    device = resolve_device(cfg.device)
    with opened_run(arch, data, cfg, device) as run:
        result = TrainResult("ok", None, 0.0, [], 0.0, 0.0, cfg.epochs, count_params(run.model),
                             dataset=data.name, arch=run.arch.canonical, device=str(device),
                             threads=torch.get_num_threads(), amp=amp_name(run.amp_dtype),
                             compile=cfg.compile, channels_last=cfg.channels_last, batch_size=run.batch_size,
                             started=time.time(),
                             train_images=run.feed.n_train, val_images=data.n_val, split=data.split,
                             config=cfg.model_dump())
        log.debug("training %s on %s: %d steps, %s, %d thread(s)", result.arch, data.name, run.total_steps,
                  device, result.threads)
        t_train = time.perf_counter()
        watcher = _Watcher(watch, run, result) if watch is not None else None
        result.loss_curve, result.steps, result.error = train_loop(run, cfg, progress, watcher)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        result.train_seconds = time.perf_counter() - t_train - result.eval_seconds  # less a watch's evaluations
        result.train_images_per_s = result.steps * run.batch_size / result.train_seconds \
            if result.train_seconds > 0 else 0.0
        if watcher is not None and watcher.pruned:
            result.status, result.top1 = "pruned", result.intermediate[-1][1]
        elif result.error is None:
            t_eval = time.perf_counter()
            net = run.ema.module if run.ema is not None else run.forward
            result.top1, result.val_loss = evaluate(net, run)
            result.eval_seconds = time.perf_counter() - t_eval
            if not math.isfinite(result.val_loss):
                result.error, result.top1 = "validation loss is not finite (weights diverged)", 0.0
            elif watcher is not None:  # the last step: the final value, as the pruner's history needs it
                result.intermediate.append([watcher.final_step, result.top1])
        if result.error is not None:
            result.status = "failed"
        result.skipped_images = run.feed.skipped
        result.seconds = time.perf_counter() - t0
        return result


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's thread count set to ``n`` for the block, restored after."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def opened_run(arch: Architecture, data: Dataset | Stream, cfg: TrainConfig, device: torch.device) -> Iterator[Run]:
    """``build_run`` on ``cfg.threads`` threads; the feed's workers are closed and the threads restored after."""
    with torch_threads(cfg.threads):
        run = build_run(arch, data, cfg, device)
        try:
            yield run
        finally:
            run.feed.close()


def build_run(arch: Architecture, data: Dataset | Stream, cfg: TrainConfig, device: torch.device) -> Run:
    """The seeded model, its optimizer, schedule and EMA, the precision, and the feed of batches."""
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    scaled = arch.scaled(cfg.width_multiplier) if cfg.width_multiplier != 1.0 else arch
    dropout = zoo.dropout_for(arch) if cfg.dropout is None else cfg.dropout  # None: the model's own
    model = build(scaled, data.num_classes, data.in_chans, dropout).to(device, memory_format=fmt)
    if cfg.init is not None:
        _load_init(model, cfg.init, scaled, data.num_classes, data.in_chans)
    elif cfg.zero_init_head:
        # the reference init (U(+-1/sqrt(classes))) on 1280 features gives logits of std ~4 for 10 classes:
        # the first hundred steps of a short proxy then go to undoing it
        nn.init.zeros_(model.classifier.weight)
    if cfg.bn_momentum:
        # a few hundred steps are too few for running statistics that move 1 % per step to catch up
        # with weights that change fast, so short proxies evaluate with stale BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.bn_momentum

    feed = make_feed(data, cfg, device, fmt, gen)
    n = feed.n_train
    bs = min(cfg.batch_size, n)
    if n // bs < 1 or (bs < 2 and _has_bn(model)):
        raise MnasError(f"too few training images ({n}) for batch size {cfg.batch_size}")
    steps_per_epoch = n // bs  # the last partial batch is dropped: BatchNorm on a handful of images is noise
    opt = make_optimizer(model, cfg)
    ema = AveragedModel(model, multi_avg_fn=tf_ema(cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None
    amp_dtype = resolve_amp(cfg.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    return Run(scaled, model, torch.compile(model) if cfg.compile else model, opt, [g["lr"] for g in opt.param_groups],
               ema, feed, amp_dtype, scaler, bs, steps_per_epoch,
               total_steps=max(1, math.ceil(cfg.epochs * steps_per_epoch)),
               warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
               decay_steps=max(1e-9, cfg.decay_epochs * steps_per_epoch), generator=gen)


def _load_init(model: nn.Module, path: str, arch: Architecture, num_classes: int, in_chans: int) -> None:
    """Start from a checkpoint's weights (``init``): the same network and label set, or one line saying how."""
    from mnas.train import checkpoint as ckpt

    blob = ckpt.read(path)
    meta = ckpt.info(blob)
    if meta.arch != arch.canonical:
        raise MnasError(f"--init {path} holds {meta.arch[:80]}... (width applied), not this run's "
                        f"{arch.canonical[:80]}...: train that string with --width-multiplier 1")
    if (meta.num_classes, meta.in_chans) != (num_classes, in_chans):
        raise MnasError(f"--init {path} was made for {meta.num_classes} classes, {meta.in_chans} channel(s); this "
                        f"dataset has {num_classes} and {in_chans}")
    model.load_state_dict(ckpt.weights(blob))


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA: on the CPU autocast is slower than float32 for these models."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def amp_name(dtype: torch.dtype | None) -> str:
    return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


class _Watcher:
    """A ``Watch`` applied to one run: which optimizer steps evaluate, and whether it was told to stop."""

    def __init__(self, watch: Watch, run: Run, result: TrainResult) -> None:
        self.watch, self.run, self.result = watch, run, result
        self.interval = max(1, round(watch.every * run.steps_per_epoch))
        self.pruned = False
        self.last_step = 0  # the last intermediate step reported
        self.final_step = math.ceil(run.total_steps / self.interval)  # the final evaluation's step

    def due(self, done: int) -> bool:
        return done % self.interval == 0 and done < self.run.total_steps  # the last one is the final evaluation

    def check(self, done: int) -> bool:
        """Evaluate after ``done`` optimizer steps and ask the watch; True: stop the training."""
        run = self.run
        t = time.perf_counter()
        top1, _ = evaluate(run.ema.module if run.ema is not None else run.forward, run)
        self.result.eval_seconds += time.perf_counter() - t
        run.model.train()
        self.last_step = done // self.interval
        self.result.intermediate.append([self.last_step, top1])
        self.pruned = bool(self.watch.report(self.last_step, top1))
        return self.pruned


def train_loop(run: Run, cfg: TrainConfig, progress: Progress | None,
               watcher: _Watcher | None = None) -> tuple[list[float], int, str | None]:
    """Every epoch of the run: the mean loss of each (a partial epoch counts), the optimizer steps done,
    and the error that stopped training early (None when it ran to the end or a watch stopped it)."""
    run.model.train()
    curve: list[float] = []
    done = 0
    for epoch in range(math.ceil(run.total_steps / run.steps_per_epoch)):
        steps = min(run.steps_per_epoch, run.total_steps - done)
        losses, error = train_epoch(run, cfg, epoch, steps, progress, watcher)
        done += len(losses)
        if losses:
            curve.append(sum(losses) / len(losses))
        if error is not None or (watcher is not None and watcher.pruned):
            return curve, done, error
    return curve, done, None


# Steps between reads of the loss when no one watches each step: a read waits for the device to finish
# every step queued so far, so reading each step's loss keeps a GPU from running ahead of Python.
READ_LOSS_EVERY = 32


def train_epoch(run: Run, cfg: TrainConfig, epoch: int, steps: int, progress: Progress | None,
                watcher: _Watcher | None = None) -> tuple[list[float], str | None]:
    """Up to ``steps`` batches of the feed's next epoch: each step's loss, and the error that stopped the
    epoch (a non-finite loss). With ``progress`` every step's loss is read at once and a non-finite one
    stops before its update; without, the losses are read every ``READ_LOSS_EVERY`` steps and at the end,
    so a few updates may follow a non-finite loss (the run fails either way, naming the first such step)."""
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    device_type = "cuda" if run.amp_dtype is not None else "cpu"

    def read() -> str | None:
        values = torch.stack(pending).tolist() if pending else []
        pending.clear()
        for value in values:
            if not math.isfinite(value):
                what = "NaN" if math.isnan(value) else "inf"
                return f"loss became {what} at epoch {epoch + 1} step {len(losses) + 1}"
            losses.append(value)
        return None

    for k, (xb, yb) in enumerate(run.feed.epoch(run.batch_size, steps)):
        step = epoch * run.steps_per_epoch + k
        f = lr_factor(step, run.total_steps, run.warmup_steps, cfg.schedule, cfg.decay_rate, run.decay_steps)
        for g, lr in zip(run.optimizer.param_groups, run.base_lrs):
            g["lr"] = lr * f
        with torch.autocast(device_type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            loss = F.cross_entropy(run.forward(xb), yb, label_smoothing=cfg.label_smoothing)
        pending.append(loss.detach().float())
        if progress is not None or len(pending) >= READ_LOSS_EVERY:
            error = read()
            if error is not None:
                return losses, error
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        if progress is not None:
            progress(step + 1, run.total_steps, losses[-1])
        if watcher is not None and watcher.due(step + 1):
            error = read()
            if error is not None or watcher.check(step + 1):
                return losses, error
    return losses, read()


def evaluate(model: nn.Module, run: Run) -> tuple[float, float]:
    """Held-out top-1 and mean loss over the feed's validation batches, in inference mode."""
    model.eval()
    run.model.eval()  # what a compiled forward runs
    correct, loss_sum, seen = 0, 0.0, 0
    device_type = "cuda" if run.amp_dtype is not None else "cpu"
    with torch.inference_mode(), torch.autocast(device_type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        for xb, yb in run.feed.val():
            logits = model(xb).float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
    if seen == 0:
        raise MnasError("no validation image could be decoded")
    return correct / seen, loss_sum / seen


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise MnasError(f"unknown device {name!r}: expected auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MnasError("device cuda requested but torch sees no GPU (use --device cpu or auto)")
    return dev


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
