"""The proxy trainer: train a sampled architecture briefly and report held-out top-1.

Speed choices (measured on the 2-core CPU, docs/training.md): channels-last memory format (about 2x on
this model: the depthwise and 1x1 convolutions go to oneDNN's NHWC kernels), the whole dataset kept as a
uint8 tensor on the device and normalised per batch, large inference-mode evaluation batches, gradients
set to None instead of zeroed, no DataLoader workers (they would compete for the 2 cores), and one thread
when the machine is busy (see auto_threads). torch.compile is not used: a search trains each model once,
so its compile time would be paid on every trial (not measured here).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from mnas import MnasError
from mnas.model import build, count_params
from mnas.space.arch import Architecture
from mnas.train.datasets import Dataset, load_dataset
from mnas.train.recipes import DEFAULT_PRESET, preset_values
from mnas.train.rmsprop_tf import RMSpropTF

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "exponential", "constant")


@dataclass
class TrainConfig:
    """Every knob of a proxy training run. Fields left at None take the preset's value (recipes.py)."""

    preset: str = DEFAULT_PRESET
    epochs: Optional[float] = None          # may be fractional (tests); steps = ceil(epochs * steps/epoch)
    batch_size: Optional[int] = None
    resolution: Optional[int] = None        # images are resized to this once, when the data are loaded
    width_multiplier: Optional[float] = None  # the proxy's width, applied with arch.scaled()
    dropout: Optional[float] = None
    optimizer: Optional[str] = None         # sgd | adam | adamw | rmsprop (TensorFlow semantics)
    lr: Optional[float] = None              # peak learning rate (per lr_ref_batch images if that is > 0)
    lr_ref_batch: Optional[int] = None      # > 0: lr scales linearly as lr * batch_size / lr_ref_batch
    momentum: Optional[float] = None
    nesterov: Optional[bool] = None         # sgd only
    rmsprop_decay: Optional[float] = None
    eps: Optional[float] = None             # rmsprop / adam epsilon
    weight_decay: Optional[float] = None    # an L2 term (coupled) except for adamw (decoupled)
    weight_decay_bn: Optional[bool] = None  # False: BatchNorm weights and biases are not decayed
    warmup_epochs: Optional[float] = None   # linear warm-up from 0, lr * step / warmup_steps
    schedule: Optional[str] = None          # cosine | exponential (staircase, from step 0) | constant
    decay_rate: Optional[float] = None      # exponential: lr *= decay_rate every decay_epochs
    decay_epochs: Optional[float] = None
    label_smoothing: Optional[float] = None
    ema_decay: Optional[float] = None       # > 0: evaluate an EMA of the weights (TF num_updates warm-up)
    hflip: Optional[bool] = None            # random horizontal flips
    zero_init_head: Optional[bool] = None   # start the classifier at 0: logits start at 0, loss at ln(classes)
    bn_momentum: Optional[float] = None     # PyTorch convention; 0: keep the builder's (TF 0.99 = 0.01)
    seed: int = 0
    val_fraction: float = 0.2               # used when data is given as a spec string
    threads: int = 0                        # > 0: torch.set_num_threads for the run (restored after);
                                            # 0: auto, all cores unless the load average says they are busy
    device: str = "auto"                    # auto (cuda when there is one) | cpu | cuda | cuda:N
    channels_last: bool = True
    eval_batch_size: int = 1000
    max_train_samples: int = 0              # > 0: train on a seeded subset of this size (quick checks)

    def __post_init__(self) -> None:
        for k, v in preset_values(self.preset).items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.optimizer not in OPTIMIZERS:
            raise MnasError(f"unknown optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise MnasError(f"unknown lr schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if self.epochs <= 0 or self.batch_size < 1 or self.resolution < 4 or self.width_multiplier <= 0:
            raise MnasError("epochs, width multiplier must be > 0, batch size >= 1, resolution >= 4")
        if self.lr < 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1:
            raise MnasError("lr and weight decay must be >= 0, label smoothing in [0, 1)")
        if not 0 <= self.ema_decay < 1 or not 0 <= self.dropout < 1:
            raise MnasError("ema_decay and dropout must be in [0, 1)")

    @property
    def peak_lr(self) -> float:
        return self.lr * self.batch_size / self.lr_ref_batch if self.lr_ref_batch else self.lr

    def to_dict(self) -> dict:
        return asdict(self)


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
    config: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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


def lr_factor(step: int, total: int, warmup: int, schedule: str, decay_rate: float, decay_steps: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
    if step < warmup:
        return step / warmup  # the reference's linear warm-up from 0
    if schedule == "exponential":
        return decay_rate ** math.floor(step / decay_steps)  # staircase, counted from step 0
    if schedule == "cosine":
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))
    return 1.0


def param_groups(model: nn.Module, weight_decay: float, decay_bn: bool) -> list[dict]:
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if id(p) in bn_params and not decay_bn else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.weight_decay_bn)
    lr = cfg.peak_lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=cfg.eps)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=cfg.eps)
    return RMSpropTF(groups, lr=lr, decay=cfg.rmsprop_decay, momentum=cfg.momentum, eps=cfg.eps)


def tf_ema(decay: float):
    """A multi_avg_fn for AveragedModel: TF's ExponentialMovingAverage with num_updates, i.e. the
    decay is min(decay, (1 + n) / (10 + n)), so a short proxy run is not dominated by the initial weights."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked): follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def train_proxy(arch: Architecture, data: Dataset | str, config: TrainConfig | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    """Train ``arch`` (scaled by config.width_multiplier) on ``data`` (a Dataset or a spec string) and
    return held-out top-1. A non-finite loss ends the trial with status "failed", not an exception.
    ``progress(step, total_steps, loss)`` is called after every step."""
    cfg = config or TrainConfig()
    t0 = time.perf_counter()
    if isinstance(data, str):
        data = load_dataset(data, cfg.resolution, cfg.val_fraction, cfg.seed)
    elif data.resolution != cfg.resolution:
        raise MnasError(f"dataset {data.name} is at {data.resolution} px but the config asks for "
                        f"{cfg.resolution} px: load it with load_dataset(spec, {cfg.resolution})")
    device = resolve_device(cfg.device)
    old_threads = torch.get_num_threads()
    threads = cfg.threads if cfg.threads > 0 else auto_threads(device)
    if threads != old_threads:
        torch.set_num_threads(threads)
    try:
        return _train(arch, data, cfg, device, t0, progress)
    finally:
        torch.set_num_threads(old_threads)


def _train(arch: Architecture, data: Dataset, cfg: TrainConfig, device: torch.device, t0: float,
           progress: Callable[[int, int, float], None] | None = None) -> TrainResult:
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    scaled = arch.scaled(cfg.width_multiplier) if cfg.width_multiplier != 1.0 else arch
    model = build(scaled, data.num_classes, data.in_chans, cfg.dropout).to(device, memory_format=fmt)
    params = count_params(model)
    if cfg.zero_init_head:
        # the reference init (U(+-1/sqrt(classes))) on 1280 features gives logits of std ~4 for 10 classes:
        # the first hundred steps of a short proxy then go to undoing it
        nn.init.zeros_(model.classifier.weight)
    if cfg.bn_momentum:
        # a few hundred steps are too few for running statistics that move 1 % per step to catch up
        # with weights that change fast, so short proxies evaluate with stale BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = cfg.bn_momentum

    x_train, y_train = data.x_train, data.y_train
    if 0 < cfg.max_train_samples < len(y_train):
        keep = torch.randperm(len(y_train), generator=gen)[:cfg.max_train_samples].sort().values
        x_train, y_train = x_train[keep], y_train[keep]
    x_train, y_train = x_train.to(device), y_train.to(device)
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(data.std, device=device).view(1, -1, 1, 1) * 255.0)

    def prepare(xb: torch.Tensor) -> torch.Tensor:
        return ((xb.float() - mean) * inv_std).contiguous(memory_format=fmt)

    n = len(y_train)
    bs = min(cfg.batch_size, n)
    if n // bs < 1 or (bs < 2 and _has_bn(model)):
        raise MnasError(f"too few training images ({n}) for batch size {cfg.batch_size}")
    steps_per_epoch = n // bs  # the last partial batch is dropped: BatchNorm on a handful of images is noise
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    decay_steps = max(1e-9, cfg.decay_epochs * steps_per_epoch)
    opt = make_optimizer(model, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema = AveragedModel(model, multi_avg_fn=tf_ema(cfg.ema_decay), use_buffers=True) if cfg.ema_decay else None

    result = TrainResult("ok", None, 0.0, [], 0.0, 0.0, cfg.epochs, params, dataset=data.name,
                         arch=scaled.canonical, device=str(device), threads=torch.get_num_threads(),
                         config=cfg.to_dict())
    model.train()
    step = 0
    t_train = time.perf_counter()
    perm = torch.empty(0, dtype=torch.long)
    epoch_losses: list[float] = []
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        if k == 0:
            perm = torch.randperm(n, generator=gen).to(device)
            if epoch_losses:
                result.loss_curve.append(sum(epoch_losses) / len(epoch_losses))
            epoch_losses = []
        idx = perm[k * bs:(k + 1) * bs]
        xb = prepare(x_train[idx])
        if cfg.hflip:
            flip = (torch.rand(bs, generator=gen) < 0.5).to(device)
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb).contiguous(memory_format=fmt)
        f = lr_factor(step, total, warmup, cfg.schedule, cfg.decay_rate, decay_steps)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * f
        loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=cfg.label_smoothing)
        value = loss.item()
        if not math.isfinite(value):
            what = "NaN" if math.isnan(value) else "inf"
            result.status, result.error = "failed", f"loss became {what} at epoch {epoch + 1} step {k + 1}"
            break
        epoch_losses.append(value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        if progress is not None:
            progress(step, total, value)
    if epoch_losses:
        result.loss_curve.append(sum(epoch_losses) / len(epoch_losses))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.train_seconds = time.perf_counter() - t_train
    result.steps = step
    result.train_images_per_s = step * bs / result.train_seconds if result.train_seconds > 0 else 0.0
    if result.ok:
        t_eval = time.perf_counter()
        net = ema.module if ema is not None else model
        result.top1, result.val_loss = evaluate(net, data, prepare, cfg.eval_batch_size, device)
        result.eval_seconds = time.perf_counter() - t_eval
        if not math.isfinite(result.val_loss):
            result.status, result.error = "failed", "validation loss is not finite (weights diverged)"
            result.top1 = 0.0
    result.seconds = time.perf_counter() - t0
    return result


def auto_threads(device: torch.device) -> int:
    """All cores on an idle machine; one thread when others keep the cores busy. OpenMP threads that
    wait on each other collapse under oversubscription: measured on the 2-core box with load ~9,
    2 threads trained at 9 images/s and 1 thread at 116 images/s (docs/training.md)."""
    cores = torch.get_num_threads()
    if device.type != "cpu" or cores <= 1:
        return cores
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores
    return 1 if load > cores + 0.5 else cores


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def evaluate(model: nn.Module, data: Dataset, prepare, batch_size: int, device: torch.device) -> tuple[float, float]:
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.inference_mode():
        for i in range(0, data.n_val, batch_size):
            xb = prepare(data.x_val[i:i + batch_size].to(device))
            yb = data.y_val[i:i + batch_size].to(device)
            logits = model(xb)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return correct / data.n_val, loss_sum / data.n_val
