"""The paper's search space (issue 18): the pooling skip through strings, builder, ONNX and the latency
table's layer enumeration, and the built-in `mnasnet-paper` space with its 432^5 architectures."""

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from hypothesis import given, settings, strategies as st

from mnas import MnasError
from mnas.latency.lut import arch_layers, space_layers
from mnas.model import build, count_params
from mnas.model.export import export
from mnas.search.config import config_from_dict
from mnas.space import Architecture, SPACES, arch_to_timm, arch_to_tpu, load_space, zoo
from mnas.testing import run_cli

PAPER = load_space("mnasnet-paper")


def pooled_mobilenet_v2() -> Architecture:
    """MobileNetV2 with the pooling skip on blocks 2-6: a point of the paper space."""
    mv2 = zoo.get("mobilenet-v2")
    blocks = tuple(replace(b, skip="pool") if 1 <= i <= 5 else b for i, b in enumerate(mv2.blocks))
    return Architecture(blocks, mv2.stem, mv2.head)


def test_paper_space_is_432_to_the_fifth():
    assert "mnasnet-paper" in SPACES.names() and "mnasnet" in SPACES.names()
    assert PAPER.size == 432 ** 5 == 15_045_919_506_432
    assert PAPER.cardinalities == (4, 2, 2, 3, 3, 3) * 5
    assert {d.name[:2] for d in PAPER.decisions} == {"b2", "b3", "b4", "b5", "b6"}
    skips = {d.choices for d in PAPER.decisions if d.name.endswith(".skip")}
    assert skips == {("pool", "identity", "none")}
    # block 2 keeps three widths: 0.75 x 24 would round up to 24, so it takes the multiples of 8 beside it
    assert PAPER.decisions[4].name == "b2.width"
    assert [PAPER.decode([0] * 4 + [i] + [0] * 25).blocks[1].out_ch for i in range(3)] == [16, 24, 32]
    # blocks 1 and 7 are MobileNetV2's, so the skeleton itself lies in the space; A1's 112 does not
    assert PAPER.contains(zoo.get("mobilenet-v2")) and PAPER.contains(pooled_mobilenet_v2())
    assert not PAPER.contains(zoo.get("mnasnet-a1"))


def test_the_current_space_stays_under_its_name():
    space = load_space("mnasnet")
    assert space.size == 32_462_531_054_272_512 and len(space.decisions) == 42
    assert all("pool" not in d.choices for d in space.decisions)


def test_space_show_json_says_size_and_why():
    r = run_cli("space", "show", "--space", "mnasnet-paper", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert 1.0e13 <= info["size"] <= 2.0e13
    assert any("pool" in d["choices"] for d in info["decisions"])
    assert "432" in info["note"] and "pooling skip" in info["note"]


def test_the_paper_config_searches_the_paper_space():
    raw = yaml.safe_load((Path(__file__).parents[1] / "configs" / "mnasnet-imagenet.yaml").read_text())
    space = config_from_dict(raw).resolved()["space"]
    assert space == "mnasnet-paper" and load_space(space).size == PAPER.size


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=100, deadline=None)
def test_paper_space_round_trips_through_canonical_strings(seed):
    tokens = PAPER.sample_tokens(random.Random(seed))
    arch = PAPER.decode(tokens)
    assert Architecture.parse(arch.canonical) == arch and PAPER.encode(arch) == tokens


def test_pooling_skip_strings():
    arch = pooled_mobilenet_v2()
    assert arch.blocks[1].to_string() == "ir_r2_k3_s2_e6_i16_o24_poolskip"
    assert Architecture.parse(arch.canonical) == arch
    for convert in (arch_to_tpu, arch_to_timm):  # neither published dialect has the op
        with pytest.raises(MnasError, match="pooling-skip"):
            convert(arch)
    with pytest.raises(MnasError, match="unknown skip op"):
        replace(arch.blocks[1], skip=True)  # the old boolean: refused, not read as "identity"
    with pytest.raises(MnasError, match="both noskip and poolskip"):
        Architecture.parse("stem32:ir_r1_k3_s2_e6_i32_o16_noskip_poolskip:head1280")


def test_pooling_skip_shortcuts_and_exact_parameters():
    arch = pooled_mobilenet_v2()
    b2 = arch.blocks[1]
    assert [b2.shortcut(i) for i in range(b2.repeats)] == ["pool", "identity"]
    model = build(arch)
    first = {i: layer for i, layer in enumerate(model.blocks)}
    # block 2's first layer (stride 2, 16 -> 24): pool then project; block 5's (stride 1, 64 -> 96): project only
    kinds = [type(m).__name__ for m in first[1].shortcut]
    assert kinds == ["AvgPool2d", "Sequential"]
    block5_first = 1 + 2 + 3 + 4
    assert [type(m).__name__ for m in first[block5_first].shortcut] == ["Sequential"]
    # the only new weights: a 1x1 conv + BN (gamma, beta) on each of blocks 2-6's first layer
    widths = [(16, 24), (24, 32), (32, 64), (64, 96), (96, 160)]
    extra = sum(cin * cout + 2 * cout for cin, cout in widths)
    assert count_params(model) == count_params(build(zoo.get("mobilenet-v2"))) + extra


@pytest.mark.parametrize("resolution", [224, 32])
def test_pooling_skip_forward_backward(resolution):
    torch.manual_seed(0)
    model = build(pooled_mobilenet_v2(), num_classes=10)
    out = model(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_pooling_skip_onnx_matches_pytorch(tmp_path):
    # 57 px: odd sizes at every stride-2 layer, where the pooling's padding must agree with the conv's
    torch.manual_seed(0)
    model = build(pooled_mobilenet_v2(), num_classes=10).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(export(model, "onnx", (1, 3, 57, 57)))
    x = torch.randn(1, 3, 57, 57)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_latency_table_enumerates_pooling_skip_layers():
    specs = space_layers(PAPER, 224)
    keys = {s.key for s in specs}
    assert len(keys) == len(specs) and any(s.shortcut == "pool" for s in specs)
    rng = random.Random(0)
    for arch in [pooled_mobilenet_v2(), *(PAPER.sample(rng) for _ in range(50))]:
        assert {s.key for s in arch_layers(arch, 224)} <= keys
    # a table entry is the layer exactly as the network has it
    spec = next(s for s in arch_layers(pooled_mobilenet_v2(), 224) if s.shortcut == "pool")
    layer = build(pooled_mobilenet_v2()).blocks[1]
    assert count_params(spec.module()) == count_params(layer)
