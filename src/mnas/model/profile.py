"""Parameters and multiply-adds, counted by PyTorch's maintained FLOP counter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Profile:
    params: int
    macs: int
    resolution: int


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, resolution: int = 224, in_chans: int = 3) -> int:
    """Conv and FC multiply-adds for one image (FlopCounterMode counts 2 FLOPs per MAC)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, in_chans, resolution, resolution))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def profile(model: nn.Module, resolution: int = 224, in_chans: int = 3) -> Profile:
    return Profile(count_params(model), count_macs(model, resolution, in_chans), resolution)
