"""timm interop: block strings that build exactly mnas's network (or none, with the reason), and weights
that move between timm's mnasnet_100 / semnasnet_100 and mnas's MnasNet-B1 / A1 with the same outputs.

Without timm the tests check against what timm's source defines: RECORDED holds the state-dict layout of
timm 1.0.31's ``mnasnet_100`` and ``semnasnet_100`` (printed from ``timm.create_model(name).state_dict()``;
the blocks are the arch_def of _gen_mnasnet_b1 / _gen_mnasnet_a1 in timm/models/efficientnet.py), and
``timm_param_count`` counts parameters by the rules of timm/models/_efficientnet_builder.py and
_efficientnet_blocks.py. Where ``import timm`` works, the same checks run against timm itself.
"""

import functools
import json
import random
import re

import pytest
import torch
from torch import nn

from mnas import MnasError
from mnas.model import build, count_params
from mnas.model.timm_weights import TIMM_BN_EPS, load_timm_state_dict, timm_names, to_timm_state_dict
from mnas.space import Architecture, Block, MnasNetSpace, arch_from_timm, arch_to_timm, round_filters, zoo
from mnas.space.blockstr import _mnas_layers  # checked against the builder
from mnas.testing import run_cli

SPACE = MnasNetSpace.load()
RANDOM_ARCHS = [SPACE.sample(random.Random(seed)) for seed in range(50)]

# one line per timm layer (the stem, head and classifier first): module, then its weight shape; a bare
# number is a BatchNorm's width. SE convs and the classifier also have a bias.
RECORDED = {
    "mnasnet_100": """
conv_stem 32x3x3x3 bn1 32 conv_head 1280x320x1x1 bn2 1280 classifier 1000x1280
blocks.0.0 conv_dw 32x1x3x3 bn1 32 conv_pw 16x32x1x1 bn2 16
blocks.1.0 conv_pw 48x16x1x1 bn1 48 conv_dw 48x1x3x3 bn2 48 conv_pwl 24x48x1x1 bn3 24
blocks.1.1 conv_pw 72x24x1x1 bn1 72 conv_dw 72x1x3x3 bn2 72 conv_pwl 24x72x1x1 bn3 24
blocks.1.2 conv_pw 72x24x1x1 bn1 72 conv_dw 72x1x3x3 bn2 72 conv_pwl 24x72x1x1 bn3 24
blocks.2.0 conv_pw 72x24x1x1 bn1 72 conv_dw 72x1x5x5 bn2 72 conv_pwl 40x72x1x1 bn3 40
blocks.2.1 conv_pw 120x40x1x1 bn1 120 conv_dw 120x1x5x5 bn2 120 conv_pwl 40x120x1x1 bn3 40
blocks.2.2 conv_pw 120x40x1x1 bn1 120 conv_dw 120x1x5x5 bn2 120 conv_pwl 40x120x1x1 bn3 40
blocks.3.0 conv_pw 240x40x1x1 bn1 240 conv_dw 240x1x5x5 bn2 240 conv_pwl 80x240x1x1 bn3 80
blocks.3.1 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x5x5 bn2 480 conv_pwl 80x480x1x1 bn3 80
blocks.3.2 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x5x5 bn2 480 conv_pwl 80x480x1x1 bn3 80
blocks.4.0 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x3x3 bn2 480 conv_pwl 96x480x1x1 bn3 96
blocks.4.1 conv_pw 576x96x1x1 bn1 576 conv_dw 576x1x3x3 bn2 576 conv_pwl 96x576x1x1 bn3 96
blocks.5.0 conv_pw 576x96x1x1 bn1 576 conv_dw 576x1x5x5 bn2 576 conv_pwl 192x576x1x1 bn3 192
blocks.5.1 conv_pw 1152x192x1x1 bn1 1152 conv_dw 1152x1x5x5 bn2 1152 conv_pwl 192x1152x1x1 bn3 192
blocks.5.2 conv_pw 1152x192x1x1 bn1 1152 conv_dw 1152x1x5x5 bn2 1152 conv_pwl 192x1152x1x1 bn3 192
blocks.5.3 conv_pw 1152x192x1x1 bn1 1152 conv_dw 1152x1x5x5 bn2 1152 conv_pwl 192x1152x1x1 bn3 192
blocks.6.0 conv_pw 1152x192x1x1 bn1 1152 conv_dw 1152x1x3x3 bn2 1152 conv_pwl 320x1152x1x1 bn3 320
""",
    "semnasnet_100": """
conv_stem 32x3x3x3 bn1 32 conv_head 1280x320x1x1 bn2 1280 classifier 1000x1280
blocks.0.0 conv_dw 32x1x3x3 bn1 32 conv_pw 16x32x1x1 bn2 16
blocks.1.0 conv_pw 96x16x1x1 bn1 96 conv_dw 96x1x3x3 bn2 96 conv_pwl 24x96x1x1 bn3 24
blocks.1.1 conv_pw 144x24x1x1 bn1 144 conv_dw 144x1x3x3 bn2 144 conv_pwl 24x144x1x1 bn3 24
blocks.2.0 conv_pw 72x24x1x1 bn1 72 conv_dw 72x1x5x5 bn2 72 se.conv_reduce 6x72x1x1 se.conv_expand 72x6x1x1 conv_pwl 40x72x1x1 bn3 40
blocks.2.1 conv_pw 120x40x1x1 bn1 120 conv_dw 120x1x5x5 bn2 120 se.conv_reduce 10x120x1x1 se.conv_expand 120x10x1x1 conv_pwl 40x120x1x1 bn3 40
blocks.2.2 conv_pw 120x40x1x1 bn1 120 conv_dw 120x1x5x5 bn2 120 se.conv_reduce 10x120x1x1 se.conv_expand 120x10x1x1 conv_pwl 40x120x1x1 bn3 40
blocks.3.0 conv_pw 240x40x1x1 bn1 240 conv_dw 240x1x3x3 bn2 240 conv_pwl 80x240x1x1 bn3 80
blocks.3.1 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x3x3 bn2 480 conv_pwl 80x480x1x1 bn3 80
blocks.3.2 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x3x3 bn2 480 conv_pwl 80x480x1x1 bn3 80
blocks.3.3 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x3x3 bn2 480 conv_pwl 80x480x1x1 bn3 80
blocks.4.0 conv_pw 480x80x1x1 bn1 480 conv_dw 480x1x3x3 bn2 480 se.conv_reduce 20x480x1x1 se.conv_expand 480x20x1x1 conv_pwl 112x480x1x1 bn3 112
blocks.4.1 conv_pw 672x112x1x1 bn1 672 conv_dw 672x1x3x3 bn2 672 se.conv_reduce 28x672x1x1 se.conv_expand 672x28x1x1 conv_pwl 112x672x1x1 bn3 112
blocks.5.0 conv_pw 672x112x1x1 bn1 672 conv_dw 672x1x5x5 bn2 672 se.conv_reduce 28x672x1x1 se.conv_expand 672x28x1x1 conv_pwl 160x672x1x1 bn3 160
blocks.5.1 conv_pw 960x160x1x1 bn1 960 conv_dw 960x1x5x5 bn2 960 se.conv_reduce 40x960x1x1 se.conv_expand 960x40x1x1 conv_pwl 160x960x1x1 bn3 160
blocks.5.2 conv_pw 960x160x1x1 bn1 960 conv_dw 960x1x5x5 bn2 960 se.conv_reduce 40x960x1x1 se.conv_expand 960x40x1x1 conv_pwl 160x960x1x1 bn3 160
blocks.6.0 conv_pw 960x160x1x1 bn1 960 conv_dw 960x1x3x3 bn2 960 conv_pwl 320x960x1x1 bn3 320
""",
}
ZOO_OF = {"mnasnet_100": "mnasnet-b1", "semnasnet_100": "mnasnet-a1"}
PUBLISHED_PARAMS = {"mnasnet_100": 4_383_312, "semnasnet_100": 3_887_038}  # timm's model cards: 4.38M, 3.89M


def recorded_shapes(name: str) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for line in RECORDED[name].strip().splitlines():
        tokens = line.split()
        prefix = tokens.pop(0) + "." if tokens[0].startswith("blocks.") else ""
        for module, shape in zip(tokens[::2], tokens[1::2]):
            dims = tuple(int(d) for d in shape.split("x"))
            key = prefix + module
            if len(dims) == 1:  # BatchNorm
                shapes.update({f"{key}.{leaf}": dims for leaf in ("weight", "bias", "running_mean", "running_var")})
                shapes[f"{key}.num_batches_tracked"] = ()
            else:
                shapes[f"{key}.weight"] = dims
                if module.startswith("se.") or module == "classifier":
                    shapes[f"{key}.bias"] = dims[:1]
    return shapes


def timm_param_count(strings: list[str], stem: int, head: int, classes: int) -> int:
    """Parameters of the network timm builds from ``strings`` (one stage each), by timm's rules: output
    widths rounded to multiples of 8; ir expands to make_divisible(in * e); SE width round(mid * se / e)
    for ir, round(in * se) for ds; cn (ConvBnAct) has no SE whatever the string says; convs have no bias."""
    total, ch = 27 * stem + 2 * stem, stem
    for text in strings:
        kind, *fields = text.split("_")
        opts = dict(re.match(r"([a-z]+)(.*)", f).groups() for f in fields if f not in ("skip", "noskip"))
        k, out, e, se = int(opts["k"]), round_filters(int(opts["c"]), 1.0), float(opts.get("e", 1)), \
            float(opts.get("se", 0))
        for _ in range(int(opts["r"])):
            if kind == "cn":
                total += k * k * ch * out + 2 * out
            else:
                mid = ch if kind == "ds" else round_filters(ch * e, 1.0)
                total += (ch * mid + 2 * mid if kind == "ir" else 0) + k * k * mid + 2 * mid
                if se:
                    rd = round(mid * (se / (e if kind == "ir" else 1.0)))
                    total += 2 * rd * mid + rd + mid
                total += mid * out + 2 * out
            ch = out
    return total + ch * head + 2 * head + head * classes + classes


def literal_timm(arch: Architecture) -> list[str]:
    """Each block's fields copied literally into timm's syntax, with none of timm's rules applied: what a
    user would otherwise paste into timm."""
    kinds = {"cv": "cn", "ds": "ds", "ir": "ir"}
    return ["_".join([kinds[b.op], f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}", f"e{b.expansion}",
                      f"c{b.out_ch}"] + ([f"se{b.se}"] if b.se else []) + (["noskip"] if b.skip == "none" else []))
            for b in arch.blocks]


def odd_archs(n: int, seed: int = 3) -> list[Architecture]:
    """Hand-made architectures off the space's grid: widths not multiples of 8, SE ratios that round,
    MBConv at e1, declared input widths that differ from the real ones."""
    rng, archs = random.Random(seed), []
    for _ in range(n):
        blocks, prev = [], 16
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(["cv", "ds", "ir"])
            out, stride = rng.choice([8, 12, 16, 24, prev]), rng.choice([1, 1, 2])
            declared = prev if rng.random() < 0.7 else rng.choice([8, 12, 16, 24])
            skip = rng.choice(["none", "identity"])
            if skip == "identity" and stride == 1 and declared == out != prev:
                skip = "none"  # the architecture would add tensors of different widths
            repeats, kernel = rng.randint(1, 3), rng.choice([1, 3])
            e, se = 1 if op == "ds" else rng.choice([1, 3, 6]), rng.choice([0, 0.25, 0.3])
            if declared != prev:  # a declared width may differ from the real one only where it sizes nothing
                e, se = 1, 0
            blocks.append(Block(op, repeats, kernel, stride, e, declared, out, se, skip))
            prev = out
        archs.append(Architecture(tuple(blocks), 16, 64))
    return archs


def meta_params(arch: Architecture, classes: int = 1000) -> int:
    with torch.device("meta"):
        return count_params(build(arch, num_classes=classes))


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every weight and BatchNorm statistic random, so a tensor loaded into the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5 if t.dim() == 1 else
                        torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


def images(seed: int = 1, size: int = 64) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(RECORDED))
def test_mnas_weights_have_timms_recorded_names_and_shapes(name):
    recorded = recorded_shapes(name)
    assert sum(torch.Size(s).numel() for k, s in recorded.items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == PUBLISHED_PARAMS[name]
    mapped = to_timm_state_dict(build(zoo.get(ZOO_OF[name])))
    assert {k: tuple(v.shape) for k, v in mapped.items()} == recorded
    # within a layer the recorded order is timm's forward order, which tells bn1 from bn2 at equal widths
    assert [k for k in mapped if k.startswith("blocks.")] == [k for k in recorded if k.startswith("blocks.")]


@pytest.mark.parametrize("zoo_name", ["mnasnet-a1", "mnasnet-b1", "mobilenet-v2", "mnasnet-small"])
def test_weights_go_to_timm_names_and_back_with_identical_outputs(zoo_name):
    arch = zoo.get(zoo_name)
    source = randomized(build(arch, num_classes=10))
    timm_sd = to_timm_state_dict(source)
    assert "conv_stem.weight" in timm_sd and not any(k.startswith("stem.") for k in timm_sd)
    target = load_timm_state_dict(build(arch, num_classes=10), timm_sd, bn_eps=1e-3).eval()
    with torch.no_grad():
        assert torch.equal(source(images()), target(images()))
    # the default eps is timm's, which its mnasnet_100 / semnasnet_100 weights were made with
    default = load_timm_state_dict(build(arch, num_classes=10), timm_sd)
    assert {m.eps for m in default.modules() if isinstance(m, nn.BatchNorm2d)} == {TIMM_BN_EPS}


def test_names_cover_every_tensor_of_random_exact_architectures():
    for arch in RANDOM_ARCHS:
        try:
            names = timm_names(arch)
        except MnasError:
            continue
        with torch.device("meta"):
            model = build(arch)
        modules = {key.rpartition(".")[0] for key in model.state_dict()}
        assert modules == names.keys()
        assert len(set(names.values())) == len(names)  # no two mnas modules land on one timm name


def test_weights_of_another_architecture_are_refused():
    b1_weights = to_timm_state_dict(build(zoo.get("mnasnet-b1")))
    with pytest.raises(MnasError, match=r"blocks.1.0.conv_pw.weight \(48, 16, 1, 1\) has no place"):
        load_timm_state_dict(build(zoo.get("mnasnet-a1")), b1_weights)
    with pytest.raises(MnasError, match="lacks 1 tensor.*bn2.bias"):
        load_timm_state_dict(build(zoo.get("mnasnet-b1")), {k: v for k, v in b1_weights.items() if k != "bn2.bias"})
    extra = {**b1_weights, "blocks.9.0.conv_pw.weight": torch.zeros(1)}
    with pytest.raises(MnasError, match="blocks.9.0.conv_pw.weight"):
        load_timm_state_dict(build(zoo.get("mnasnet-b1")), extra)
    conv_se = next(a for a in RANDOM_ARCHS if any(b.op == "cv" and b.se for b in a.blocks))
    with pytest.raises(MnasError, match="no squeeze-excite"):
        to_timm_state_dict(build(conv_se))


@pytest.mark.slow  # seconds: kept out of make test-fast
def test_no_random_architecture_gets_a_timm_string_that_builds_another_network():
    inexact = 0
    for arch in RANDOM_ARCHS:
        mnas_params = meta_params(arch)
        conv_se = any(b.op == "cv" and b.se for b in arch.blocks)
        try:
            strings = arch_to_timm(arch)
        except MnasError as e:
            inexact += 1
            # the space's widths are multiples of 8, so a regular conv with SE is the one thing timm lacks
            assert conv_se and "no squeeze-excite" in str(e)
            assert timm_param_count(literal_timm(arch), arch.stem, arch.head, 1000) != mnas_params
            continue
        assert not conv_se
        assert timm_param_count(strings, arch.stem, arch.head, 1000) == mnas_params
        assert meta_params(arch_from_timm(strings, arch.stem, arch.head)) == mnas_params
    assert 0 < inexact < len(RANDOM_ARCHS)


def test_arch_show_json_gives_the_reason_instead_of_a_timm_string():
    conv_se = next(a for a in RANDOM_ARCHS if any(b.op == "cv" and b.se for b in a.blocks))
    for name, exact in ((conv_se.canonical, False), ("mnasnet-a1", True)):
        r = run_cli("arch", "show", name, "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        if exact:
            assert info["timm"][2] == "ir_r3_k5_s2_e3_c40_se0.25" and info["timm_inexact_because"] is None
        else:
            assert info["timm"] is None and "cn block (ConvBnAct) has no squeeze-excite" in \
                info["timm_inexact_because"]


def test_timm_strings_follow_timms_skip_rules():
    # a regular conv adds its residual in timm only when told `skip`; ds/ir unless told `noskip`
    convs = Architecture.parse("stem32:cv_r2_k3_s1_e1_i32_o32:cv_r2_k3_s2_e1_i32_o64_noskip:head1280")
    assert arch_to_timm(convs) == ["cn_r2_k3_s1_e1_c32_skip", "cn_r2_k3_s2_e1_c64_noskip"]
    assert arch_from_timm(arch_to_timm(convs)) == convs
    assert arch_from_timm("cn_r2_k3_s1_c32").blocks[0].skip == "none"
    # an MBConv without expansion is timm's ds (timm's ir would add a 1x1 conv)
    assert arch_to_timm(Architecture.parse("stem32:ir_r1_k3_s1_e1_i32_o32:head1280")) == ["ds_r1_k3_s1_e1_c32"]
    # a first layer that receives 24 channels but declares 16 has no residual, the second layer has one;
    # timm decides once per string, so no string says both
    split = Architecture.parse("stem24:ds_r2_k3_s1_e1_i16_o24:head1280")
    with pytest.raises(MnasError, match=r"block 1 \(ds_r2.*layer 1: timm adds the residual that mnas drops"):
        arch_to_timm(split)
    # an MBConv whose declared width is not its real one (mnas would expand the declared one, timm the real
    # one) is no architecture at all: one string, two networks
    with pytest.raises(MnasError, match="declares i16 but its input has 24 channels"):
        Architecture.parse("stem24:ir_r1_k3_s2_e6_i16_o24:head1280")


def test_mnas_layer_widths_used_for_timm_strings_are_the_builders():
    for arch in odd_archs(60):
        width, params = arch.stem, 27 * arch.stem + 2 * arch.stem
        for b in arch.blocks:
            for layer in _mnas_layers(b, width):
                se = 2 * layer.se * layer.mid + layer.se + layer.mid if layer.se else 0
                if layer.kind == "cn":  # squeeze-excite on the output
                    se = 2 * layer.se * layer.out + layer.se + layer.out if layer.se else 0
                    params += layer.kernel ** 2 * layer.in_ch * layer.out + 2 * layer.out + se
                    continue
                expand = layer.in_ch * layer.mid + 2 * layer.mid if layer.kind == "ir" else 0
                params += expand + layer.kernel ** 2 * layer.mid + 2 * layer.mid + se + \
                    layer.mid * layer.out + 2 * layer.out
            width = b.out_ch
        assert params + width * arch.head + 2 * arch.head + arch.head * 10 + 10 == meta_params(arch, 10), arch


@pytest.mark.parametrize("text,match", [
    ("cn_r1_k3_s1_c32_se0.25", "no squeeze-excite"),
    ("ir_r1_k3_s1_e1_c32", "1x1 expansion conv"),
    ("ir_r1_k3_s2_e6_c20", "rounds the output width 20 to 24"),
    ("ir_r1_k3_s2_e6_c32_se0.3", "squeeze-excite width 10 in timm, 9 in mnas"),
    ("ds_r1_k3_s1_c32_skip_noskip", "both skip and noskip"),
])
def test_timm_strings_mnas_cannot_build_exactly_are_refused(text, match):
    with pytest.raises(MnasError, match=match):
        arch_from_timm(text)


# --- against timm itself, where it imports (it needs torchvision) ---------------------------------------

def _timm():
    try:
        import timm
    except Exception as e:  # torchvision's CUDA wheel fails with RuntimeError, not only ImportError
        pytest.skip(f"timm does not import here ({type(e).__name__}); it needs torchvision, which does not "
                    "install beside the CPU torch")
    return timm


def _timm_from_strings(strings, arch, classes):
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet
    return EfficientNet(decode_arch_def([[s] for s in strings]), num_classes=classes, stem_size=arch.stem,
                        num_features=arch.head, norm_layer=functools.partial(nn.BatchNorm2d, eps=1e-3)).eval()


@pytest.mark.parametrize("name", list(RECORDED))
def test_real_timm_models_load_into_mnas_and_back(name):
    timm = _timm()
    theirs = randomized(timm.create_model(name))
    assert {k: tuple(v.shape) for k, v in theirs.state_dict().items()} == recorded_shapes(name)
    ours = load_timm_state_dict(build(zoo.get(ZOO_OF[name])), theirs.state_dict()).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(images()), theirs(images()))
    ours = randomized(build(zoo.get(ZOO_OF[name])), seed=2)
    theirs = timm.create_model(name, bn_eps=1e-3).eval()
    theirs.load_state_dict(to_timm_state_dict(ours))
    with torch.no_grad():
        torch.testing.assert_close(ours(images()), theirs(images()))


def test_real_timm_builds_exactly_the_architectures_it_gets_strings_for():
    _timm()
    for n, arch in enumerate(RANDOM_ARCHS + odd_archs(100)):
        try:
            strings = arch_to_timm(arch)
        except MnasError:
            if arch in RANDOM_ARCHS:  # timm builds another network from the fields copied literally
                literal = _timm_from_strings(literal_timm(arch), arch, 10)
                assert count_params(literal) == timm_param_count(literal_timm(arch), arch.stem, arch.head, 10)
                assert count_params(literal) != count_params(build(arch, num_classes=10))
            continue
        ours = randomized(build(arch, num_classes=10), seed=n)
        theirs = _timm_from_strings(strings, arch, 10)
        theirs.load_state_dict(to_timm_state_dict(ours))
        with torch.no_grad():
            torch.testing.assert_close(ours(images(size=32)), theirs(images(size=32)))
