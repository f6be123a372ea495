"""What the trainer optimises with: the optimizer over decay / no-decay groups, the lr schedule, and
TensorFlow's weight EMA."""

from __future__ import annotations

import math

import torch
from torch import nn

from mnas.train.config import TrainConfig
from mnas.train.rmsprop_tf import RMSpropTF


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
