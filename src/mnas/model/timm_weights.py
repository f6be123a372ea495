"""timm's state-dict names for mnas models, both ways: a timm ``mnasnet_100`` / ``semnasnet_100`` state dict
loads into mnas's MnasNet-B1 / A1 and computes the same outputs, and an mnas model's weights load into the
timm network built from its timm block strings (``mnas.space.arch_to_timm``).

timm makes one stage per block string and names a layer's parts after its block class
(``blocks.{stage}.{layer}.conv_dw``, ``bn1``, ``se.conv_reduce``, ...: timm/models/_efficientnet_blocks.py);
mnas numbers layers flat (``blocks.{layer}.ops.{part}``, mnas.model.builder.Layer). Only architectures
that timm builds exactly have a mapping; the error says which block timm would build differently.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from mnas import MnasError
from mnas.model.builder import MnasNet
from mnas.space.arch import Architecture
from mnas.space.blockstr import arch_to_timm

log = logging.getLogger(__name__)

# timm's mnasnet_100 and semnasnet_100 build BatchNorm with PyTorch's default eps; mnas uses TensorFlow's
# 1e-3 (mnas.model.builder.BN_EPS). Weights trained with one eps give other outputs under the other.
TIMM_BN_EPS = 1e-5

_STEM_HEAD = {"stem.0": "conv_stem", "stem.1": "bn1", "head.0": "conv_head", "head.1": "bn2",
              "classifier": "classifier"}
# (conv, its BatchNorm) in mnas's build order, by timm block type; squeeze-excite sits before the last pair
_CONVS = {"cn": [("conv", "bn1")], "ds": [("conv_dw", "bn1"), ("conv_pw", "bn2")],
          "ir": [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]}


def timm_names(arch: Architecture) -> dict[str, str]:
    """mnas module name -> timm module name, for every module that holds weights or statistics."""
    names = dict(_STEM_HEAD)
    layer = 0
    for stage, (block, text) in enumerate(zip(arch.blocks, arch_to_timm(arch))):
        for i in range(block.repeats):
            for part, timm in _layer_parts(text.split("_")[0], bool(block.se)):
                names[f"blocks.{layer}.ops.{part}"] = f"blocks.{stage}.{i}.{timm}"
            layer += 1
    return names


def to_timm_state_dict(model: MnasNet) -> dict[str, torch.Tensor]:
    """The model's state dict under timm's names. Build the timm model with ``bn_eps`` equal to the
    model's (mnas: 1e-3, e.g. ``timm.create_model("semnasnet_100", bn_eps=1e-3)``) for the same outputs.
    The block strings carry no stem stride: for a stride-1 stem (``stem32s1``, the CIFAR variants) give the
    timm model's ``conv_stem`` stride 1 too."""
    names = timm_names(Architecture.parse(model.arch))
    return {_rename(key, names, "mnas"): value for key, value in model.state_dict().items()}


def load_timm_state_dict(model: MnasNet, state_dict: Mapping[str, torch.Tensor],
                         bn_eps: float = TIMM_BN_EPS) -> MnasNet:
    """Load a timm state dict into ``model`` (every tensor, each of its own shape) and give the model's
    BatchNorm layers ``bn_eps``, the eps the timm weights were made with, so it computes what timm does."""
    names = timm_names(Architecture.parse(model.arch))
    inverse = {timm: mnas for mnas, timm in names.items()}
    own, renamed = model.state_dict(), {}
    for key, value in state_dict.items():
        ours = _rename(key, inverse, "timm")
        if ours not in own or value.shape != own[ours].shape:
            raise MnasError(f"timm's {key} {tuple(value.shape)} has no place in the model"
                            f"{f' (its {ours} is {tuple(own[ours].shape)})' if ours in own else ''}: "
                            "the timm model is another architecture")
        renamed[ours] = value
    if missing := sorted(own.keys() - renamed.keys()):
        raise MnasError(f"the timm state dict lacks {len(missing)} tensor(s) the model has, e.g. "
                        f"{_rename(missing[0], names, 'mnas')}")
    model.load_state_dict(renamed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = bn_eps
    log.debug("loaded %d timm tensors into %s (BatchNorm eps %g)", len(renamed), model.arch, bn_eps)
    return model


def _layer_parts(kind: str, se: bool) -> list[tuple[str, str]]:
    """(mnas name below ``ops``, timm name) of each module of one layer that holds weights."""
    ops: list[tuple[str, str] | None] = list(_CONVS[kind])
    if se:
        ops.insert(len(ops) - 1, None)
    parts: list[tuple[str, str]] = []
    for i, op in enumerate(ops):
        if op is None:
            parts += [(f"{i}.reduce", "se.conv_reduce"), (f"{i}.expand", "se.conv_expand")]
        else:
            parts += [(f"{i}.0", op[0]), (f"{i}.1", op[1])]
    return parts


def _rename(key: str, names: Mapping[str, str], source: str) -> str:
    module, _, leaf = key.rpartition(".")
    if module not in names:
        raise MnasError(f"the {source} state dict has {key!r}, which the other side's architecture lacks: "
                        "the models are different architectures")
    return f"{names[module]}.{leaf}"
