"""Every zoo model: exact parameter counts, MACs, forward at 224 and 32, backward."""

import pytest
import torch

from mnas.model import build, count_params, profile
from mnas.space import zoo

PARAMS = [
    ("mnasnet-a1", 1.0, 3_887_038), ("mnasnet-a1", 0.75, 2_912_278), ("mnasnet-a1", 1.4, 6_105_992),
    ("mnasnet-a1", 0.5, 2_082_006), ("mnasnet-a1", 0.35, 1_747_018),
    ("mnasnet-b1", 1.0, 4_383_312), ("mnasnet-b1", 0.5, 2_218_512), ("mnasnet-b1", 0.75, 3_170_208),
    ("mnasnet-b1", 1.3, 6_282_256), ("mnasnet-b1", 1.4, 7_115_728),
    ("mnasnet-small", 1.0, 2_030_264), ("mnasnet-d1", 1.0, 3_638_404),
    ("mobilenet-v2", 1.0, 3_504_872), ("mobilenet-v2", 1.4, 6_108_776),
]
MACS = [("mnasnet-a1", 311.6e6), ("mnasnet-b1", 314.4e6), ("mnasnet-small", 68.3e6)]


@pytest.mark.parametrize("name,width,expected", PARAMS)
def test_exact_parameter_counts(name, width, expected):
    assert count_params(build(zoo.get(name, width))) == expected


@pytest.mark.parametrize("name,expected", MACS)
def test_macs_within_one_percent(name, expected):
    macs = profile(build(zoo.get(name)), 224).macs
    assert abs(macs - expected) / expected < 0.01


def test_mobilenet_v2_head_widens_only_above_one():
    assert zoo.get("mobilenet-v2", 1.4).head == 1792
    assert zoo.get("mobilenet-v2", 0.5).head == 1280
    assert zoo.get("mnasnet-a1", 1.4).head == 1280


@pytest.mark.parametrize("resolution,name", [(r, n) for r in (224, 32) for n in zoo.names()
                                             if r == 32 or zoo.ZOO[n].stem_stride == 2])  # -cifar: 32 px only
def test_forward_backward(resolution, name):
    torch.manual_seed(0)
    model = build(zoo.get(name), num_classes=10)
    x = torch.randn(2, 3, resolution, resolution)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_input_channels_and_reference_semantics():
    model = build(zoo.get("mnasnet-a1"), num_classes=7, in_chans=1, dropout=0.3)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)
    assert model.dropout.p == 0.3
    # A1: 9 of 16 layers carry the identity residual; SE widths from the block's input filters
    assert sum(isinstance(layer.shortcut, torch.nn.Identity) for layer in model.blocks) == 9
    assert sum(layer.shortcut is not None for layer in model.blocks) == 9
    se = [m.reduce.out_channels for m in model.modules() if hasattr(m, "reduce")]
    assert se == [6, 10, 10, 20, 28, 28, 40, 40]


def test_small_first_block_has_no_residual_by_declared_widths():
    model = build(zoo.get("mnasnet-small"))
    assert model.blocks[0].shortcut is None  # declared i16 != o8 although the tensor is 8 -> 8


def test_each_model_carries_its_reference_dropout():
    assert zoo.dropout_for(zoo.get("mnasnet-small")) == 0.0
    assert zoo.dropout_for(zoo.get("mnasnet-a1")) == zoo.dropout_for(zoo.get("mnasnet-b1")) == 0.2
    assert zoo.find(zoo.get("mnasnet-b1")) is zoo.ZOO["mnasnet-b1"]
    # matched at width 1.0 (the trainer scales afterwards); anything else gets the reference default
    assert zoo.find(zoo.get("mnasnet-small", 0.5)) is None
    assert zoo.dropout_for(zoo.get("mnasnet-small", 0.5)) == 0.2
