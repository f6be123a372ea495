"""Search space as data, canonical strings and the TPU/timm dialects (property tests)."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from mnas import MnasError
from mnas.space import (Architecture, MnasNetSpace, arch_from_timm, arch_from_tpu, arch_to_timm,
                        arch_to_tpu, resolve_arch, round_filters, zoo)

SPACE = MnasNetSpace.load()
CIFAR = MnasNetSpace.cifar()
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def test_default_space_size_and_decisions():
    # blocks 1 and 7 have a base of one layer, so only {+0, +1} remain for them; in blocks 1 and 2
    # the widths 0.75x and 1.0x round to the same channel count (16, 24), leaving two width choices
    assert SPACE.size == (4 * 2 * 2 * 2) ** 7 * 2 ** 2 * 3 ** 5 * 3 ** 5 * 2 ** 2
    assert [d.choices for d in SPACE.decisions if d.name in ("b1.width", "b3.width")] == [
        (1.0, 1.25), (0.75, 1.0, 1.25)]
    assert len(SPACE.decisions) == 42
    assert SPACE.decisions[0].name == "b1.op"


@given(seeds, st.sampled_from([SPACE, CIFAR]))
@settings(max_examples=200, deadline=None)
def test_sample_canonical_parse_round_trip(seed, space):
    tokens = space.sample_tokens(random.Random(seed))
    arch = space.decode(tokens)
    assert Architecture.parse(arch.canonical) == arch
    assert space.encode(arch) == tokens
    assert arch.digest == Architecture.parse(arch.canonical).digest
    # the stem stride is written only where it is not ImageNet's 2, and survives parsing and scaling
    assert arch.canonical.startswith("stem32s1:" if space is CIFAR else "stem32:")
    assert Architecture.parse(arch.canonical).stem_stride == space.stem_stride
    assert arch.scaled(0.75).stem_stride == space.stem_stride


@given(seeds, st.sampled_from([SPACE, CIFAR]))
@settings(max_examples=200, deadline=None)
def test_tpu_timm_canonical_round_trip(seed, space):
    arch = space.sample(random.Random(seed))
    stride = arch.stem_stride  # the block strings carry none: it is given beside them, like the stem width
    if any(b.op == "cv" and b.se for b in arch.blocks):  # timm's cn block has no squeeze-excite
        with pytest.raises(MnasError, match="no squeeze-excite"):
            arch_to_timm(arch)
    else:
        timm = arch_to_timm(arch)
        assert arch_from_timm(timm, stem=arch.stem, stem_stride=stride) == arch
        assert arch_to_timm(arch_from_timm(timm)) == timm
    if all(b.op != "cv" for b in arch.blocks):
        tpu = arch_to_tpu(arch)
        assert arch_from_tpu(tpu, stem_stride=stride) == arch
        assert arch_to_tpu(arch_from_tpu(tpu)) == tpu
    else:
        with pytest.raises(MnasError, match="regular-conv"):
            arch_to_tpu(arch)


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_strings_round_trip_exactly(name):
    entry = zoo.ZOO[name]
    arch = entry.arch()
    assert " ".join(arch_to_tpu(arch)) == entry.tpu_blocks
    assert Architecture.parse(arch.canonical) == arch
    assert resolve_arch(arch.canonical)[1] == arch


def test_timm_strings_match_published_a1():
    assert arch_to_timm(zoo.get("mnasnet-a1")) == [
        "ds_r1_k3_s1_e1_c16_noskip", "ir_r2_k3_s2_e6_c24", "ir_r3_k5_s2_e3_c40_se0.25",
        "ir_r4_k3_s2_e6_c80", "ir_r2_k3_s1_e6_c112_se0.25", "ir_r3_k5_s2_e6_c160_se0.25",
        "ir_r1_k3_s1_e6_c320"]


def test_timm_keeps_small_first_block_without_residual():
    small = zoo.get("mnasnet-small")
    assert arch_to_timm(small)[0] == "ds_r1_k3_s1_e1_c8_noskip"


@pytest.mark.parametrize("filters,mult,expected", [(32, 0.75, 24), (112, 0.75, 88), (32, 1.4, 48),
                                                   (16, 0.35, 8), (40, 0.35, 16), (1280, 1.4, 1792)])
def test_round_filters_reference_rule(filters, mult, expected):
    assert round_filters(filters, mult) == expected


def test_membership():
    assert SPACE.contains(zoo.get("mobilenet-v2"))
    assert not SPACE.contains(zoo.get("mnasnet-a1"))  # 112 channels: not 0.75/1/1.25 x 96
    with pytest.raises(MnasError, match="block 5: width"):
        SPACE.encode(zoo.get("mnasnet-a1"))


@pytest.mark.parametrize("text,match", [
    ("stem32:ir_r1_k3_s2:head1280", "lacks field"),
    ("stem32:xx_r1_k3_s1_e1_i32_o16:head1280", "op code"),
    ("stem32:ir_r1_k4_s1_e6_i32_o16:head1280", "kernel odd"),
    ("stem32:ir_r1_k3_s3_e6_i32_o16:head1280", "stride"),
    ("stem32:ds_r1_k3_s1_e6_i32_o16:head1280", "expansion 1"),
    ("stem32s3:ds_r1_k3_s1_e1_i32_o16:head1280", "bad stem stride 3"),
    ("stem32s:ds_r1_k3_s1_e1_i32_o16:head1280", "bad stem field"),
    ("stem32s1s1:ds_r1_k3_s1_e1_i32_o16:head1280", "bad stem field"),
    ("r1_k3_s2_e1_i32_o16", "two digits"),
    ("r1_k3_s12_e1_i32_o16", "non-square"),
    ("ir_r1_k3_s1_e6_c16_zz", "bad field"),
    ("resnet50", "neither a zoo model"),
])
def test_malformed_strings_raise_clear_errors(text, match):
    with pytest.raises(MnasError, match=match):
        resolve_arch(text)


def test_space_yaml_fixes_blocks_and_validates(tmp_path):
    text = (SPACE.source and open(SPACE.source).read()).replace(
        "- {width_base: 16, layers_base: 1, stride: 1}",
        "- {width_base: 16, layers_base: 1, stride: 1, op: ds, kernel: 3, se: 0, skip: none, width: 1.0, layers: 0}")
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = MnasNetSpace.load(path)
    assert len(space.decisions) == 36
    arch = space.sample(random.Random(1))
    assert arch.blocks[0].to_string() == "ds_r1_k3_s1_e1_i32_o16_noskip"
    assert space.encode(arch) and space.decode(space.encode(arch)) == arch
    path.write_text(text.replace("kernel: [3, 5]", "kernel: [3, 5]\n  colour: red"))
    with pytest.raises(MnasError, match="colour"):
        MnasNetSpace.load(path)
    path.write_text("blocks: [}")
    with pytest.raises(MnasError, match="not valid YAML"):
        MnasNetSpace.load(path)
