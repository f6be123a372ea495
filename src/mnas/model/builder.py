"""Architecture -> torch.nn.Module with the reference semantics (docs/search-space.md, "Ops")."""

from __future__ import annotations

import math

import torch
from torch import nn

from mnas.space.arch import Architecture, Block

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's 0.99


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


def make_shortcut(kind: str, cin: int, cout: int, stride: int) -> nn.Module | None:
    """None (nothing added), identity, or the pooling skip as mnas reads it (the paper names the op
    without defining it): 3x3 average pooling with the layer's stride, so it samples the positions the
    layer's 'same' conv does, then a linear 1x1 conv + BN where the width changes."""
    if kind == "none":
        return None
    if kind == "identity":
        return nn.Identity()
    ops: list[nn.Module] = []
    if stride > 1:
        ops.append(nn.AvgPool2d(3, stride, 1, count_include_pad=False))
    if cin != cout:
        ops.append(conv_bn(cin, cout, 1, act=False))
    return nn.Sequential(*ops)


class Layer(nn.Module):
    """One layer of a block; ``declared_in`` is the block string's input width (residual rule, SE and
    expansion widths), ``actual_in`` the width of the incoming tensor; ``shortcut`` is
    ``Block.shortcut(layer)``."""

    def __init__(self, b: Block, actual_in: int, declared_in: int, stride: int, shortcut: str) -> None:
        super().__init__()
        ops: list[nn.Module] = []
        se_width = max(1, int(declared_in * b.se))
        if b.op == "cv":
            ops.append(conv_bn(actual_in, b.out_ch, b.kernel, stride))
            if b.se:
                ops.append(SqueezeExcite(b.out_ch, se_width))
        else:
            mid = actual_in
            if b.expansion != 1:
                mid = declared_in * b.expansion
                ops.append(conv_bn(actual_in, mid, 1))
            ops.append(conv_bn(mid, mid, b.kernel, stride, groups=mid))
            if b.se:
                ops.append(SqueezeExcite(mid, se_width))
            ops.append(conv_bn(mid, b.out_ch, 1, act=False))
        self.ops = nn.Sequential(*ops)
        self.shortcut = make_shortcut(shortcut, actual_in, b.out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ops(x)
        return y if self.shortcut is None else y + self.shortcut(x)


class MnasNet(nn.Module):
    def __init__(self, arch: Architecture, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.arch = arch.canonical
        self.stem = conv_bn(in_chans, arch.stem, 3, arch.stem_stride)
        layers: list[nn.Module] = []
        prev = arch.stem
        for b in arch.blocks:
            for i in range(b.repeats):
                declared = b.in_ch if i == 0 else b.out_ch
                layers.append(Layer(b, prev, declared, b.stride if i == 0 else 1, b.shortcut(i)))
                prev = b.out_ch
        self.blocks = nn.Sequential(*layers)
        self.head = conv_bn(prev, arch.head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(arch.head, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def init_weights(model: nn.Module) -> None:
    """Reference init: conv ~ N(0, sqrt(2/fan_out)) with fan_out = k*k*out/groups; FC ~ U(+-1/sqrt(classes))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def build(arch: Architecture, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.2) -> MnasNet:
    return MnasNet(arch, num_classes, in_chans, dropout)
