"""The distinct layer configurations of a MnasNet space, and which of them an architecture uses.

A table entry is one layer as the builder makes it (``mnas.model.builder.Layer``), identified by
everything that changes its cost: op, expansion, kernel, SE ratio, declared and actual input width, output
width, stride, input resolution and the shortcut it adds (none, identity, pooling skip). The stem and the
head (1x1 conv, pool, classifier) are entries too, so a prediction covers the whole network.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mnas import MnasError
from mnas.space.arch import Architecture, Block, round_filters

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.mnasnet import MnasNetSpace


# res0/res1 as in tables built before the pooling skip existed, so those tables stay valid
_SHORTCUT_KEYS = {"none": "0", "identity": "1", "pool": "pool"}


def out_res(res: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel conv: (res + 2*(k//2) - k) // s + 1."""
    return (res - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "stem", "layer" or "head"
    in_ch: int  # actual input width
    out_ch: int
    res: int  # input resolution
    op: str = ""
    kernel: int = 3
    stride: int = 1  # the stem's is given explicitly (2, or 1 in a CIFAR space)
    expansion: int = 1
    declared_in: int = 0
    se: float = 0.0
    shortcut: str = "none"  # Block.shortcut(): "none", "identity" or "pool"
    num_classes: int = 0

    @property
    def key(self) -> str:
        if self.kind == "stem":  # stride 2 unwritten, as in tables built before the stem had a stride
            stride = "" if self.stride == 2 else f"_s{self.stride}"
            return f"stem_c{self.in_ch}_o{self.out_ch}_r{self.res}{stride}"
        if self.kind == "head":
            return f"head_i{self.in_ch}_o{self.out_ch}_r{self.res}_n{self.num_classes}"
        return (f"{self.op}_e{self.expansion}_k{self.kernel}_se{self.se:g}_i{self.declared_in}_a{self.in_ch}"
                f"_o{self.out_ch}_s{self.stride}_r{self.res}_res{_SHORTCUT_KEYS[self.shortcut]}")

    @property
    def out_res(self) -> int:
        return 1 if self.kind == "head" else out_res(self.res, self.stride)

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        return (batch, self.in_ch, self.res, self.res)

    def module(self) -> nn.Module:
        """The layer exactly as ``mnas.model.build`` makes it, so the runtime fuses it the same way."""
        from torch import nn

        from mnas.model.builder import Layer, conv_bn, init_weights

        if self.kind == "stem":
            m: nn.Module = conv_bn(self.in_ch, self.out_ch, 3, self.stride)
        elif self.kind == "head":
            m = nn.Sequential(conv_bn(self.in_ch, self.out_ch, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                              nn.Linear(self.out_ch, self.num_classes))
        else:
            blk = Block(self.op, 1, self.kernel, self.stride, self.expansion, self.declared_in, self.out_ch,
                        self.se, self.shortcut)
            m = Layer(blk, self.in_ch, self.declared_in, self.stride, self.shortcut)
        init_weights(m)
        return m


def arch_layers(arch: Architecture, resolution: int, in_chans: int = 3, num_classes: int = 1000) -> list[LayerSpec]:
    """The entries an architecture's network is made of, in execution order."""
    res = resolution
    out = [LayerSpec("stem", in_chans, arch.stem, res, stride=arch.stem_stride)]
    res, prev = out_res(res, arch.stem_stride), arch.stem
    for b in arch.blocks:
        for i in range(b.repeats):
            stride = b.stride if i == 0 else 1
            declared = b.in_ch if i == 0 else b.out_ch
            out.append(LayerSpec("layer", prev, b.out_ch, res, b.op, b.kernel, stride, b.expansion, declared,
                                 float(b.se), b.shortcut(i)))
            res, prev = out_res(res, stride), b.out_ch
    out.append(LayerSpec("head", prev, arch.head, res, num_classes=num_classes))
    return out


def space_layers(space: MnasNetSpace, resolution: int, in_chans: int = 3, num_classes: int = 1000) -> list[LayerSpec]:
    """Every distinct entry any architecture of ``space`` can need, without enumerating architectures:
    block i's first layer depends on block i-1's width choice, its other layers only on its own choices."""
    from mnas.space.mnasnet import op_code

    info = space.describe()
    options = {d["name"]: d["choices"] for d in info["decisions"]}
    specs: dict[str, LayerSpec] = {}

    def add(s: LayerSpec) -> None:
        specs.setdefault(s.key, s)

    add(LayerSpec("stem", in_chans, space.stem, resolution, stride=space.stem_stride))
    res, prev_widths = out_res(resolution, space.stem_stride), {space.stem}
    for i, blk in enumerate(info["blocks"], 1):
        opt = {k: options.get(f"b{i}.{k}", [blk["fixed"].get(k)]) for k in
               ("op", "kernel", "se", "skip", "width", "layers")}
        widths = sorted({round_filters(blk["width_base"], float(w)) for w in opt["width"]})
        max_repeats = blk["layers_base"] + max(int(x) for x in opt["layers"])
        stride = blk["stride"]
        for op, k, se, skip in itertools.product(opt["op"], opt["kernel"], opt["se"], opt["skip"]):
            code, e = op_code(str(op))
            for w in widths:
                for p in sorted(prev_widths):
                    first = Block(code, max_repeats, int(k), stride, e, p, w, float(se), str(skip))
                    add(LayerSpec("layer", p, w, res, code, int(k), stride, e, p, float(se), first.shortcut(0)))
                if max_repeats >= 2:  # later layers: input = output width, stride 1
                    add(LayerSpec("layer", w, w, out_res(res, stride), code, int(k), 1, e, w, float(se),
                                  first.shortcut(1)))
        res, prev_widths = out_res(res, stride), set(widths)
    for p in sorted(prev_widths):
        add(LayerSpec("head", p, space.head, res, num_classes=num_classes))
    return list(specs.values())


def check_in_space(space: MnasNetSpace, arch: Architecture) -> None:
    try:
        space.encode(arch)
    except MnasError as e:
        raise MnasError(f"architecture is outside the table's space {space.name!r}: {e}") from None
