"""The CIFAR variant: a stem stride in the architecture grammar (written only when it is not 2), the
mnasnet-cifar space, the -cifar zoo models and configs/cifar10.yaml, which times what it trains."""

import json
import random
from pathlib import Path

import pytest
import torch

from mnas import MnasError
from mnas.latency.lut import arch_layers, space_layers
from mnas.model import build, count_params, profile
from mnas.search.config import load_config
from mnas.search.references import CIFAR_REFERENCES, REFERENCES, references_for
from mnas.space import Architecture, MnasNetSpace, load_space, resolve_arch, zoo

CIFAR = MnasNetSpace.cifar()
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar10.yaml"

# Canonical strings and digests as the code wrote them before the stem had a stride (commit 4a6ff3f):
# stored experiments, tables and caches are keyed on them, so they must never change.
OLD = [
    ("mobilenet-v2", 1.0, "f668fe7973bc",
     "stem32:ds_r1_k3_s1_e1_i32_o16:ir_r2_k3_s2_e6_i16_o24:ir_r3_k3_s2_e6_i24_o32:ir_r4_k3_s2_e6_i32_o64:"
     "ir_r3_k3_s1_e6_i64_o96:ir_r3_k3_s2_e6_i96_o160:ir_r1_k3_s1_e6_i160_o320:head1280"),
    ("mobilenet-v2", 0.5, "d6d59cd00404",
     "stem16:ds_r1_k3_s1_e1_i16_o8:ir_r2_k3_s2_e6_i8_o16:ir_r3_k3_s2_e6_i16_o16:ir_r4_k3_s2_e6_i16_o32:"
     "ir_r3_k3_s1_e6_i32_o48:ir_r3_k3_s2_e6_i48_o80:ir_r1_k3_s1_e6_i80_o160:head1280"),
    ("mnasnet-a1", 1.0, "7d380d7f5af3",
     "stem32:ds_r1_k3_s1_e1_i32_o16_noskip:ir_r2_k3_s2_e6_i16_o24:ir_r3_k5_s2_e3_i24_o40_se0.25:"
     "ir_r4_k3_s2_e6_i40_o80:ir_r2_k3_s1_e6_i80_o112_se0.25:ir_r3_k5_s2_e6_i112_o160_se0.25:"
     "ir_r1_k3_s1_e6_i160_o320:head1280"),
    ("mnasnet-small", 1.0, "aecb15b1851f",
     "stem8:ds_r1_k3_s1_e1_i16_o8:ir_r1_k3_s2_e3_i8_o16:ir_r2_k3_s2_e6_i16_o16:ir_r4_k5_s2_e6_i16_o32_se0.25:"
     "ir_r3_k3_s1_e6_i32_o32_se0.25:ir_r3_k5_s2_e6_i32_o88_se0.25:ir_r1_k3_s1_e6_i88_o144:head1280"),
]


@pytest.mark.parametrize("name,width,digest,canonical", OLD)
def test_old_strings_and_digests_are_unchanged(name, width, digest, canonical):
    arch = zoo.get(name, width)
    assert arch.stem_stride == 2
    assert arch.canonical == canonical and arch.digest == digest
    assert Architecture.parse(canonical) == arch and Architecture.parse(canonical).canonical == canonical
    # the LUT's stem entry keeps the key tables were built with
    assert arch_layers(arch, 224)[0].key == f"stem_c3_o{arch.stem}_r224"


def test_stem_stride_round_trips_and_two_is_written_as_before():
    text = OLD[0][3].replace("stem32:", "stem32s1:")
    arch = Architecture.parse(text)
    assert arch.stem_stride == 1 and arch.canonical == text
    assert arch.digest != OLD[0][2]  # another network, another digest
    assert arch.scaled(0.5).stem_stride == 1 and arch.scaled(0.5).canonical.startswith("stem16s1:")
    explicit = Architecture.parse(OLD[0][3].replace("stem32:", "stem32s2:"))  # accepted, written the short way
    assert explicit == zoo.get("mobilenet-v2") and explicit.canonical == OLD[0][3]
    with pytest.raises(MnasError, match="bad stem stride 4"):
        Architecture(arch.blocks, stem_stride=4)


@pytest.mark.parametrize("name", ["mobilenet-v2-cifar", "mnasnet-a1-cifar"])
@pytest.mark.parametrize("width", [0.5, 0.75, 1.0, 1.4])
def test_cifar_models_end_at_4x4_at_32_px(name, width):
    """Total stride 8: a 32-px image leaves the last block at 4x4 (ImageNet's strides: 1x1)."""
    arch = zoo.get(name, width)
    with torch.device("meta"):
        features = build(arch, num_classes=10).eval().forward_features(torch.empty(1, 3, 32, 32))
    assert features.shape[-2:] == (4, 4)
    imagenet = zoo.get(name.removesuffix("-cifar"), width)
    with torch.device("meta"):
        assert build(imagenet).eval().forward_features(torch.empty(1, 3, 32, 32)).shape[-2:] == (1, 1)
    # the adaptation is the stem and block 2 only: same blocks otherwise, so the same parameters
    assert arch.stem_stride == 1 and arch.blocks[1].stride == 1 and imagenet.blocks[1].stride == 2
    assert arch.blocks[2:] == imagenet.blocks[2:] and arch.blocks[0] == imagenet.blocks[0]


def test_mobilenet_v2_cifar_macs_match_a_hand_count():
    """MobileNetV2-CIFAR x1.0 at 32 px, 10 classes, counted by hand (MACs of a conv: out_h * out_w * k * k *
    in / groups * out; 1x1 convs k = 1, depthwise in / groups = 1). Spatial sizes: stem s1 -> 32, blocks 1-2
    at 32, block 3 -> 16, block 4 -> 8, block 5 at 8, block 6 -> 4, block 7 and the head at 4."""
    hand = [
        32 * 32 * 9 * 3 * 32,                                           # stem 3x3, 3 -> 32:         884,736
        32 * 32 * 9 * 32 + 32 * 32 * 32 * 16,                           # b1 dw 32, pw 32 -> 16:     819,200
        32 * 32 * 16 * 96 + 32 * 32 * 9 * 96 + 32 * 32 * 96 * 24,       # b2.1 16 -> 96 -> 24:     4,816,896
        32 * 32 * 24 * 144 + 32 * 32 * 9 * 144 + 32 * 32 * 144 * 24,    # b2.2 24 -> 144 -> 24:    8,404,992
        32 * 32 * 24 * 144 + 16 * 16 * 9 * 144 + 16 * 16 * 144 * 32,    # b3.1 s2 -> 16 px:        5,050,368
        2 * (16 * 16 * 32 * 192 + 16 * 16 * 9 * 192 + 16 * 16 * 192 * 32),  # b3.2-3:              7,176,192
        16 * 16 * 32 * 192 + 8 * 8 * 9 * 192 + 8 * 8 * 192 * 64,        # b4.1 s2 -> 8 px:         2,469,888
        3 * (8 * 8 * 64 * 384 + 8 * 8 * 9 * 384 + 8 * 8 * 384 * 64),    # b4.2-4:                 10,100,736
        8 * 8 * 64 * 384 + 8 * 8 * 9 * 384 + 8 * 8 * 384 * 96,          # b5.1:                    4,153,344
        2 * (8 * 8 * 96 * 576 + 8 * 8 * 9 * 576 + 8 * 8 * 576 * 96),    # b5.2-3:                 14,819,328
        8 * 8 * 96 * 576 + 4 * 4 * 9 * 576 + 4 * 4 * 576 * 160,        # b6.1 s2 -> 4 px:         5,096,448
        2 * (4 * 4 * 160 * 960 + 4 * 4 * 9 * 960 + 4 * 4 * 960 * 160),  # b6.2-3:                 10,106,880
        4 * 4 * 160 * 960 + 4 * 4 * 9 * 960 + 4 * 4 * 960 * 320,        # b7:                      7,511,040
        4 * 4 * 320 * 1280,                                             # head 1x1:                6,553,600
        1280 * 10,                                                      # classifier:                 12,800
    ]
    assert sum(hand) == 87_976_448
    with torch.device("meta"):
        prof = profile(build(zoo.get("mobilenet-v2-cifar"), num_classes=10), 32)
    assert prof.macs == sum(hand)
    # the same weights as ImageNet's MobileNetV2 (strides hold none) with a 10-class classifier
    assert prof.params == count_params(build(zoo.get("mobilenet-v2"), num_classes=10)) == 2_236_682


def test_the_cifar_space_samples_only_stride_1_stems():
    assert load_space("mnasnet-cifar").name == "mnasnet-cifar" and CIFAR.stem_stride == 1
    assert CIFAR.size == MnasNetSpace.load().size  # the same choices, other strides
    rng = random.Random(0)
    for _ in range(50):
        arch = CIFAR.sample(rng)
        assert arch.stem_stride == 1 and arch.canonical.startswith("stem32s1:")
        assert [b.stride for b in arch.blocks] == [1, 1, 2, 2, 1, 2, 1]
    assert CIFAR.contains(zoo.get("mobilenet-v2-cifar"))
    with pytest.raises(MnasError, match="stem stride 2 differs from the space's 1"):
        CIFAR.encode(zoo.get("mobilenet-v2"))
    assert not MnasNetSpace.load().contains(zoo.get("mobilenet-v2-cifar"))
    assert MnasNetSpace.load().stem_stride == MnasNetSpace.paper().stem_stride == 2


def test_lut_layers_see_the_stride_1_stem():
    arch = zoo.get("mobilenet-v2-cifar")
    layers = arch_layers(arch, 32, num_classes=10)
    assert layers[0].key == "stem_c3_o32_r32_s1" and layers[0].out_res == 32
    assert layers[1].res == 32 and layers[-1].res == 4  # block 1 at 32 px, the head at 4x4
    stem = layers[0].module()
    assert stem(torch.zeros(1, 3, 32, 32)).shape == (1, 32, 32, 32)
    keys = {s.key for s in space_layers(CIFAR, 32, num_classes=10)}
    rng = random.Random(1)
    for a in [arch, *(CIFAR.sample(rng) for _ in range(30))]:
        assert {s.key for s in arch_layers(a, 32, num_classes=10)} <= keys


def test_cifar_references_exist_and_follow_the_space():
    assert references_for(CIFAR) is CIFAR_REFERENCES and references_for(MnasNetSpace.load()) is REFERENCES
    for model, width in CIFAR_REFERENCES.values():
        _, arch = resolve_arch(model, width)
        assert arch.stem_stride == 1
    assert {m for m, _ in CIFAR_REFERENCES.values()} == {"mobilenet-v2-cifar", "mnasnet-a1-cifar"}
    assert sorted(w for m, w in CIFAR_REFERENCES.values() if m == "mobilenet-v2-cifar") == [0.5, 0.75, 1.0, 1.4]


def test_cifar10_config_times_the_network_it_trains():
    cfg = load_config(CONFIG)
    assert cfg.space == "mnasnet-cifar"
    assert cfg.latency.resolution == cfg.proxy.resolution == 32
    assert cfg.latency.num_classes == 10 and cfg.proxy.width_multiplier == 1.0
    _, target = resolve_arch(cfg.reward.target_model)
    assert target == zoo.get("mobilenet-v2-cifar") and load_space(cfg.space).contains(target)


def test_cli_shows_the_cifar_space_and_macs_at_32_px(cli):
    r = cli("space", "show", "--space", "mnasnet-cifar")
    assert r.code == 0 and "mnasnet-cifar" in r.stdout and "stride-1 stem" in r.stdout
    r = cli("arch", "show", "mobilenet-v2-cifar", "--resolution", "32", "--num-classes", "10",
            "--space", "mnasnet-cifar", "--json")
    assert r.code == 0, r.stderr
    assert '"macs": 87976448' in r.stdout and '"stem_stride": 1' in r.stdout and '"in_space": true' in r.stdout
    # without --space a stride-1 stem is judged against the CIFAR space, an ImageNet stem against mnasnet
    r = cli("arch", "show", "mnasnet-a1-cifar", "--resolution", "32", "--json")
    assert r.code == 0 and '"space": "mnasnet-cifar"' in r.stdout and "block 5: width" in r.stdout
    r = cli("arch", "show", "mobilenet-v2", "--json")
    assert r.code == 0 and '"space": "mnasnet"' in r.stdout and '"in_space": true' in r.stdout
    assert json.loads(r.stdout)["tpu"] and json.loads(r.stdout)["timm"]
    # block strings have no stem: read back they would give a stride-2 stem, so none are shown for stride 1
    shown = json.loads(cli("arch", "show", "mobilenet-v2-cifar", "--json").stdout)
    assert shown["tpu"] is None and shown["timm"] is None and "stem" in shown["timm_inexact_because"]
    r = cli("arch", "show", "stem32s5:ds_r1_k3_s1_e1_i32_o16:head1280")
    assert r.code == 2 and "bad stem stride 5" in r.stderr


def test_a_latency_table_is_built_for_the_cifar_space_by_name(tmp_path):
    from mnas.cli.lut_cmds import _space_text
    from mnas.latency import LatencySettings
    from mnas.latency.lut.build import new_table

    table = new_table("mnasnet-cifar", "onnxruntime", LatencySettings(resolution=32, num_classes=10))
    assert table.space.name == "mnasnet-cifar" and table.space.stem_stride == 1
    assert "stem_stride: 1" in _space_text(Path("mnasnet-cifar"))  # lut eval --space mnasnet-cifar
    with pytest.raises(MnasError, match="--space no-such-space: cannot read"):
        _space_text(Path("no-such-space"))
