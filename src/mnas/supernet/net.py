"""A weight-sharing supernet over a MnasNet-style space: every architecture of the space is a sub-network.

What is shared, per layer slot (block i, layer j; a block's first k layers are its k-layer choice):

- **op type**: regular conv (``cv``), depthwise-separable (``ds``) and MBConv (``ir``) keep separate weights:
  a dense k x k conv, a depthwise conv on the input and a depthwise conv on the expanded width compute
  different things, so no slice of one is a sensible start for another. All MBConv expansions share one
  set of weights (the expansion is a channel slice).
- **kernel**: the largest kernel's weights; a smaller kernel takes their centre. With ``kernel_transform``
  the centre passes through a small learned transform per kernel size (a k^2 x k^2 matrix, shared by the
  channels of the layer, initialised to the identity), as Once-for-All does, so the small kernel need not
  equal the big one's centre. New supernets leave it out (``KERNEL_TRANSFORM``): at CPU scale the learned
  transforms slowed training down or stopped it (docs/results/2026-12-06-supernet-paths.md: a drawn kernel
  reached loss 1.13 with them and 0.86 without; the nested decisions drawn together, 2.00 and 1.26).
- **widths** (output width, MBConv expansion, squeeze-excite width): channel slices, the first c channels.
  The sandwich rule does not reorder channels: it trains the smallest sub-network every step, so the leading
  channels are the ones every sub-network uses and become the important ones by construction (BigNAS does
  the same). Progressive shrinking trains the largest alone first, so it sorts each MBConv's hidden channels
  by importance before it draws the expansion (``sort_hidden_channels``).
- **squeeze-excite**: one SE per op slot, sliced like the widths; SE off skips it.
- **skip**: identity and none hold no weights; the pooling skip's 1x1 projection (first layer only) is
  sliced like a conv. With ``share_skip=False`` each skip choice of a block has its own copy of every op
  type's weights (keys ``<op>_<skip>``, e.g. ``ir_none``): a layer with the identity skip learns a
  correction to its input, one without it must carry everything, and one set of weights serving both
  did not train at CPU scale (docs/results/2026-12-06-supernet.md, "Separate weights per skip"). The
  pooling projection stays one per slot. BatchNorm affine weights and running statistics are sliced with their channels.

A sub-network is computed by the standalone builder itself (``mnas.model.build``, its weights supplied by
``torch.func.functional_call``): the supernet owns only the sharing, so the sliced state loads into
``build(arch)`` unchanged and the extracted model computes what the supernet computed. Sub-networks are trained at the supernet's width multiplier (the proxy's, ``arch.scaled``), as proxy
training trains them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from mnas import MnasError
from mnas.model import build
from mnas.model.builder import BN_EPS, BN_MOMENTUM, init_weights
from mnas.space.arch import Architecture, round_filters
from mnas.space.decisions import SearchSpace
from mnas.space.mnasnet import DECISIONS, MnasNetSpace, op_code


def space_identity(space: SearchSpace) -> dict[str, Any]:
    """What makes two spaces the same for a supernet: its structure (``describe()`` without where it was
    read from), and a short hash of it for messages."""
    d = {k: v for k, v in space.describe().items() if k not in ("source", "note")}
    text = json.dumps(d, sort_keys=True, default=str)
    return {"name": space.name, "sha": hashlib.sha256(text.encode()).hexdigest()[:12], "structure": d}


@dataclass(frozen=True)
class BlockLayout:
    """One block's options, read from the space."""

    options: dict[str, tuple[Any, ...]]
    stride: int
    in_max: int        # the widest input of the block's first layer (scaled)
    out_max: int       # the widest output (scaled)
    layers_max: int
    kernel_max: int
    expansion_max: int
    se_max: float
    ops: tuple[str, ...]  # op codes present: cv, ds, ir


def block_layouts(space: MnasNetSpace, width_multiplier: float) -> list[BlockLayout]:
    d = space.describe()
    decisions = {x["name"]: tuple(x["choices"]) for x in d["decisions"]}
    out: list[BlockLayout] = []
    prev = round_filters(space.stem, width_multiplier) if width_multiplier != 1.0 else space.stem
    for i, blk in enumerate(d["blocks"], 1):
        opts = {k: decisions.get(f"b{i}.{k}", (blk["fixed"].get(k),)) for k in DECISIONS}
        widths = [round_filters(blk["width_base"], float(w)) for w in opts["width"]]
        if width_multiplier != 1.0:
            widths = [round_filters(w, width_multiplier) for w in widths]
        codes = [op_code(str(o)) for o in opts["op"]]
        ops = tuple(sorted({c for c, _ in codes}))
        out_max = max(widths)
        out.append(BlockLayout(opts, blk["stride"], prev, out_max, blk["layers_base"] + max(opts["layers"]),
                               max(opts["kernel"]), max([e for c, e in codes if c == "ir"], default=1),
                               max(float(s) for s in opts["se"]), ops))
        prev = out_max
    return out


class _Slot(nn.Module):
    """One layer slot's weights: one set per op type present in the block (per op type and skip choice
    without ``share_skip``), plus the pooling projection."""

    def __init__(self, lay: BlockLayout, first: bool, share_skip: bool = True,
                 kernel_transform: bool = True) -> None:
        super().__init__()
        self.share_skip = share_skip
        skips = [None] if share_skip else [str(x) for x in lay.options["skip"]]
        cin = lay.in_max if first else lay.out_max
        cout, k = lay.out_max, lay.kernel_max
        r = max(1, int(cin * lay.se_max))
        small = sorted({int(x) for x in lay.options["kernel"] if int(x) < k}) if kernel_transform else []
        self.ops = nn.ModuleDict()
        for skip in skips:
            self._add_ops(lay, cin, cout, k, r, small, skip)
        self.pool_proj = None
        if first and "pool" in lay.options["skip"]:
            self.pool_proj = _Op({"conv": _conv(cin, cout, 1)}, {"bn": cout}, None, [], ())

    def op(self, code: str, skip: str) -> "_Op":
        """The weights of op type ``code`` under the block's skip choice ``skip``."""
        return self.ops[code if self.share_skip else f"{code}_{skip}"]

    def _add_ops(self, lay: BlockLayout, cin: int, cout: int, k: int, r: int, small: list[int],
                 skip: str | None) -> None:
        sfx = "" if skip is None else f"_{skip}"
        if "cv" in lay.ops:
            self.ops["cv" + sfx] = _Op({"conv": _conv(cin, cout, k)}, {"bn": cout},
                                       _se(cout, r) if lay.se_max else None, small, ("conv",))
        if "ds" in lay.ops:
            self.ops["ds" + sfx] = _Op({"dw": _conv(cin, cin, k, groups=cin), "pw": _conv(cin, cout, 1)},
                                       {"dw_bn": cin, "pw_bn": cout}, _se(cin, r) if lay.se_max else None, small,
                                       ("dw",))
        if "ir" in lay.ops:
            mid = cin * lay.expansion_max
            self.ops["ir" + sfx] = _Op({"exp": _conv(cin, mid, 1), "dw": _conv(mid, mid, k, groups=mid),
                                        "pw": _conv(mid, cout, 1)}, {"exp_bn": mid, "dw_bn": mid, "pw_bn": cout},
                                       _se(mid, r) if lay.se_max else None, small, ("dw",))


class _Op(nn.Module):
    def __init__(self, convs: dict[str, nn.Conv2d], bns: dict[str, int], se: nn.ModuleDict | None,
                 small_kernels: list[int], elastic: tuple[str, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict(convs)
        self.bns = nn.ModuleDict({n: nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM) for n, c in bns.items()})
        self.se = se
        # kernel transforms: "<conv>_<k>" -> a (k*k, k*k) matrix applied to the centre of the big kernel
        self.transforms = nn.ParameterDict({f"{name}_{s}": nn.Parameter(torch.eye(s * s))
                                            for name in elastic for s in small_kernels})


def _conv(cin: int, cout: int, k: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)


def _se(channels: int, reduced: int) -> nn.ModuleDict:
    return nn.ModuleDict({"reduce": nn.Conv2d(channels, reduced, 1), "expand": nn.Conv2d(reduced, channels, 1)})


def _op_size(op: Any) -> float:
    code, e = op_code(str(op))
    return {"ds": 0.0, "cv": 0.5}.get(code, float(e))


SHARE_SKIP = True  # new supernets: a block's skip choices share its op weights (SuperNet's share_skip)
KERNEL_TRANSFORM = False  # new supernets: a small kernel is the big one's centre, no learned transform (above)
TEMPLATES = 8  # cached sub-network builders: the largest and the smallest of every step, and a few more

_ORDER = {"op": _op_size, "kernel": float, "se": float, "width": float, "layers": float}


class SuperNet(nn.Module):
    """``net(x, arch)``: the sub-network ``arch`` (an architecture of ``space``, at the space's widths) on a
    batch. ``extract(arch)``: the same sub-network as a standalone ``mnas.model`` network. ``share_skip``:
    whether a block's skip choices share its op weights (True, the first supernets) or each has its own.
    ``kernel_transform``: whether a small kernel's centre passes through a learned transform (True, the first
    supernets) or is used as it is."""

    def __init__(self, space: SearchSpace, num_classes: int, in_chans: int = 3, width_multiplier: float = 1.0,
                 dropout: float = 0.0, share_skip: bool = SHARE_SKIP,
                 kernel_transform: bool = KERNEL_TRANSFORM) -> None:
        super().__init__()
        if not isinstance(space, MnasNetSpace):
            raise MnasError(f"a supernet covers MnasNet-style spaces; {space.name} is not one: give --space "
                            "mnasnet, mnasnet-cifar, mnasnet-paper or a MnasNet space YAML file")
        self.space, self.num_classes, self.in_chans = space, num_classes, in_chans
        self.width_multiplier, self.dropout, self.share_skip = width_multiplier, dropout, share_skip
        self.kernel_transform = kernel_transform
        self.layouts = block_layouts(space, width_multiplier)
        stem = round_filters(space.stem, width_multiplier) if width_multiplier != 1.0 else space.stem
        self.stem = nn.ModuleDict({"conv": _conv(in_chans, stem, 3),
                                   "bn": nn.BatchNorm2d(stem, eps=BN_EPS, momentum=BN_MOMENTUM)})
        self.slots = nn.ModuleList(nn.ModuleList(_Slot(lay, j == 0, share_skip, kernel_transform)
                                                 for j in range(lay.layers_max)) for lay in self.layouts)
        self.head = nn.ModuleDict({"conv": _conv(self.layouts[-1].out_max, space.head, 1),
                                   "bn": nn.BatchNorm2d(space.head, eps=BN_EPS, momentum=BN_MOMENTUM)})
        self.classifier = nn.Linear(space.head, num_classes)
        init_weights(self)
        self._templates: OrderedDict[tuple[str, bool], nn.Module] = OrderedDict()

    # -- sub-networks

    def scaled(self, arch: Architecture) -> Architecture:
        """``arch`` (checked against the space) at the supernet's width multiplier."""
        self.space.encode(arch)  # MnasError naming the first decision arch does not fit
        return arch.scaled(self.width_multiplier) if self.width_multiplier != 1.0 else arch

    def pick(self, which: str, rng: random.Random | None = None) -> Architecture:
        """The largest or the smallest sub-network: every decision at its largest (smallest) option; the op
        at the widest MBConv (the depthwise-separable); the skip the same in both (identity where offered).
        With ``rng``, each block's op type and skip are drawn instead (op and skip are not nested choices:
        no option of them contains another), uniformly over the op types and the skips the block offers; the
        other decisions, the op's expansion among its type's included, stay at the largest (smallest)."""
        tokens = []
        types: dict[str, str] = {}
        for dec in self.space.decisions:
            block, key = dec.name.split(".", 1)
            if key == "skip":
                if rng is not None:
                    tokens.append(rng.randrange(len(dec.choices)))
                else:
                    tokens.append(dec.choices.index("identity") if "identity" in dec.choices else 0)
                continue
            options = range(len(dec.choices))
            if key == "op" and rng is not None:
                codes = sorted({op_code(str(c))[0] for c in dec.choices})
                types[block] = rng.choice(codes)
                options = [t for t in options if op_code(str(dec.choices[t]))[0] == types[block]]
            ranked = sorted(options, key=lambda t: _ORDER[key](dec.choices[t]))
            tokens.append(ranked[-1] if which == "largest" else ranked[0])
        return self.space.decode(tokens)

    def sample(self, rng: random.Random) -> Architecture:
        return self.space.sample(rng)  # type: ignore[return-value]

    def state_for(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """The weights of ``build(arch.scaled(w))``, key for key: slices (and kernel transforms) of the
        supernet's parameters, so gradients reach them, and views of its BatchNorm statistics, so a forward
        in training mode updates them in place."""
        sub = self.scaled(arch)
        state: dict[str, torch.Tensor] = {}
        _put_conv(state, "stem.0", self.stem["conv"].weight[:, :, :, :])
        _put_bn(state, "stem.1", self.stem["bn"], sub.stem)
        n, prev = 0, sub.stem
        for blk, lay, slots in zip(sub.blocks, self.layouts, self.slots):
            for j in range(blk.repeats):
                declared = blk.in_ch if j == 0 else blk.out_ch
                _layer_state(state, f"blocks.{n}", slots[j], blk, prev, declared, blk.stride if j == 0 else 1,
                             blk.shortcut(j))
                prev, n = blk.out_ch, n + 1
        _put_conv(state, "head.0", self.head["conv"].weight[:, :prev])
        _put_bn(state, "head.1", self.head["bn"], sub.head)
        state["classifier.weight"], state["classifier.bias"] = self.classifier.weight, self.classifier.bias
        return state

    def template(self, arch: Architecture) -> nn.Module:
        """``build(arch.scaled(w))``, the last few cached: what runs a sub-network (its own weights are never
        used). Built on the CPU, not the meta device: the meta device's first use costs seconds a process,
        a small build milliseconds."""
        key = (arch.canonical, self.training)
        model = self._templates.pop(key, None)
        if model is None:
            # the init draws random numbers: not from the stream dropout draws from, or what is in the cache
            # would change a run's random numbers (a resumed run would not continue the interrupted one)
            with torch.random.fork_rng(devices=[]):
                model = build(self.scaled(arch), self.num_classes, self.in_chans, self.dropout)
        model.train(self.training)
        self._templates[key] = model
        while len(self._templates) > TEMPLATES:
            self._templates.popitem(last=False)
        return model

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:  # type: ignore[override]
        return functional_call(self.template(arch), self.state_for(arch), (x,), strict=True)

    def extract(self, arch: Architecture, dropout: float | None = None) -> nn.Module:
        """The sub-network as a standalone network (``mnas.model.build``) holding copies of its weights and
        BatchNorm statistics, in the supernet's mode."""
        model = build(self.scaled(arch), self.num_classes, self.in_chans,
                      self.dropout if dropout is None else dropout)
        model.load_state_dict({k: v.detach().clone() for k, v in self.state_for(arch).items()}, strict=True)
        return model.train(self.training)


def _put_conv(state: dict, key: str, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    state[f"{key}.weight"] = weight
    if bias is not None:
        state[f"{key}.bias"] = bias


def _put_bn(state: dict, key: str, bn: nn.BatchNorm2d, c: int) -> None:
    state[f"{key}.weight"], state[f"{key}.bias"] = bn.weight[:c], bn.bias[:c]
    state[f"{key}.running_mean"], state[f"{key}.running_var"] = bn.running_mean[:c], bn.running_var[:c]
    state[f"{key}.num_batches_tracked"] = bn.num_batches_tracked


def _kernel(op: _Op, name: str, weight: torch.Tensor, k: int) -> torch.Tensor:
    """The centre k x k of ``weight``, through the layer's learned transform for k (none for the largest)."""
    big = weight.shape[-1]
    if k == big:
        return weight
    if k > big:
        raise MnasError(f"kernel {k} is larger than the supernet's {big}")
    lo = (big - k) // 2
    centre = weight[:, :, lo:lo + k, lo:lo + k]
    if not len(op.transforms):  # a supernet without kernel transforms: the centre as it is
        return centre
    t = op.transforms[f"{name}_{k}"]
    return (centre.reshape(-1, k * k) @ t.T).reshape(centre.shape)


def _put_se(state: dict, key: str, se: nn.ModuleDict, channels: int, reduced: int) -> None:
    r, e = se["reduce"], se["expand"]
    _put_conv(state, f"{key}.reduce", r.weight[:reduced, :channels], r.bias[:reduced])
    _put_conv(state, f"{key}.expand", e.weight[:channels, :reduced], e.bias[:channels])


def _layer_state(state: dict, key: str, slot: _Slot, b: Any, cin: int, declared: int, stride: int,
                 shortcut: str) -> None:
    """The keys of ``mnas.model.builder.Layer`` for block ``b``'s layer (its ops in the builder's order)."""
    se_width = max(1, int(declared * b.se))
    idx = 0

    def conv_bn(op: _Op, conv: str, bn: str, cout: int, cin_: int, k: int | None = None) -> None:
        nonlocal idx
        w = op.convs[conv].weight[:cout, :cin_]
        _put_conv(state, f"{key}.ops.{idx}.0", w if k is None else _kernel(op, conv, w, k))
        _put_bn(state, f"{key}.ops.{idx}.1", op.bns[bn], cout)
        idx += 1

    if b.op == "cv":
        op = slot.op("cv", b.skip)
        conv_bn(op, "conv", "bn", b.out_ch, cin, b.kernel)
        if b.se:
            _put_se(state, f"{key}.ops.{idx}", op.se, b.out_ch, se_width)
    else:
        op = slot.op(b.op, b.skip)
        mid = cin
        if b.expansion != 1:
            mid = declared * b.expansion
            conv_bn(op, "exp", "exp_bn", mid, cin)
        w = op.convs["dw"].weight[:mid]
        _put_conv(state, f"{key}.ops.{idx}.0", _kernel(op, "dw", w, b.kernel))
        _put_bn(state, f"{key}.ops.{idx}.1", op.bns["dw_bn"], mid)
        idx += 1
        if b.se:
            _put_se(state, f"{key}.ops.{idx}", op.se, mid, se_width)
            idx += 1
        conv_bn(op, "pw", "pw_bn", b.out_ch, mid)
    if shortcut == "pool" and cin != b.out_ch:
        at = 1 if stride > 1 else 0
        proj = slot.pool_proj
        assert proj is not None  # built for the first layer wherever the space offers the pooling skip
        _put_conv(state, f"{key}.shortcut.{at}.0", proj.convs["conv"].weight[:b.out_ch, :cin])
        _put_bn(state, f"{key}.shortcut.{at}.1", proj.bns["bn"], b.out_ch)


ENDS = ("fixed", "mixed")  # the sandwich ends: fixed op and skip, or drawn per block each step


def sandwich(net: SuperNet, rng: random.Random, n_random: int = 2, ends: str = "fixed") -> list[Architecture]:
    """The sandwich rule's sub-networks of one step: the largest first (the teacher), the smallest, and
    ``n_random`` sampled uniformly from the space. ``ends="fixed"``: the two ends are always the same two
    networks (the widest MBConv with the identity skip, and the depthwise-separable); ``"mixed"``: both ends
    draw each block's op type and skip (``SuperNet.pick`` with ``rng``), so that the non-nested choices are
    trained at the largest and the smallest widths, kernels and depths every step."""
    if ends not in ENDS:
        raise MnasError(f"sandwich ends {ends!r}: choose one of {', '.join(ENDS)}")
    r = rng if ends == "mixed" else None
    return [net.pick("largest", r), net.pick("smallest", r), *(net.sample(rng) for _ in range(n_random))]


def decisions_covered(archs: Sequence[Architecture], space: MnasNetSpace) -> set[tuple[str, int]]:
    """(decision, option index) pairs the architectures use: how a test shows it covered every choice."""
    out: set[tuple[str, int]] = set()
    for a in archs:
        for d, t in zip(space.decisions, space.encode(a)):
            out.add((d.name, t))
    return out


# Progressive shrinking (Once-for-All's; ``mnas supernet train --sampling progressive``): the steps fall
# into equal stages, each drawing more of the decisions, the rest at the largest's choice. OFA's order: the
# full network alone, then the kernel, then the depth, then the width (here also the op type, SE and skip,
# which OFA's space does not have). Equal stages: nothing about the split was tuned.
STAGES: tuple[tuple[str, ...], ...] = ((), ("kernel",), ("kernel", "layers"),
                                       ("kernel", "layers", "op", "se", "width", "skip"))
WIDTH_STAGE = 3  # the stage that first draws the MBConv expansion: its hidden channels are sorted before it


def stage_of(step: int, steps: int) -> int:
    """The progressive stage of step ``step`` (0-based) of ``steps``."""
    return min(len(STAGES) - 1, step * len(STAGES) // max(1, steps))


def sample_within(net: SuperNet, rng: random.Random, keys: Sequence[str]) -> Architecture:
    """A sub-network drawing the decisions named ``keys`` (``kernel``, ``layers``, ...) uniformly, every other
    decision at the largest's choice."""
    base = net.space.encode(net.pick("largest"))
    tokens = [rng.randrange(len(d.choices)) if d.name.split(".", 1)[1] in keys else t
              for d, t in zip(net.space.decisions, base)]
    return net.space.decode(tokens)


def progressive(net: SuperNet, rng: random.Random, n_random: int, stage: int) -> list[Architecture]:
    """Progressive shrinking's sub-networks of one step: the largest (the teacher, trained on the labels), then,
    from stage 1 on, ``n_random + 1`` drawn within the stage's decisions (as many students as the sandwich
    rule's smallest and random ones)."""
    largest = net.pick("largest")
    if stage == 0:
        return [largest]
    return [largest, *(sample_within(net, rng, STAGES[stage]) for _ in range(n_random + 1))]


@torch.no_grad()
def sort_hidden_channels(net: SuperNet, opt: torch.optim.Optimizer | None = None) -> int:
    """Sort every MBConv's expanded (hidden) channels by importance, the L1 norm of the projection's weights on
    each, most important first, as progressive shrinking does before it draws the expansion: a sub-network
    with a smaller expansion keeps the first channels. The expansion conv's outputs, the depthwise conv, their
    BatchNorms (statistics too), the squeeze-excite's input and output, and the optimizer's state for each of
    them move together, so the largest network's outputs are unchanged (a sub-network with a smaller
    expansion now reads the most important channels). Blocks that offer an MBConv with expansion 1
    are left as they are (there the depthwise conv's first channels face the input's). Returns how many ops
    were sorted."""
    sorted_ops = 0
    for lay, slots in zip(net.layouts, net.slots):
        if any(op_code(str(o)) == ("ir", 1) for o in lay.options["op"]):
            continue
        for slot in slots:
            for op in slot.ops.values():
                if "exp" not in op.convs:
                    continue
                order = op.convs["pw"].weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
                moves: list[tuple[torch.Tensor, int]] = [(op.convs["exp"].weight, 0), (op.convs["dw"].weight, 0),
                                                         (op.convs["pw"].weight, 1)]
                for name in ("exp_bn", "dw_bn"):
                    bn = op.bns[name]
                    moves += [(bn.weight, 0), (bn.bias, 0), (bn.running_mean, 0), (bn.running_var, 0)]
                if op.se is not None:
                    moves += [(op.se["reduce"].weight, 1), (op.se["expand"].weight, 0), (op.se["expand"].bias, 0)]
                for t, dim in moves:
                    t.copy_(t.index_select(dim, order))
                    for v in (opt.state.get(t, {}).values() if opt is not None else ()):
                        if torch.is_tensor(v) and v.shape == t.shape:
                            v.copy_(v.index_select(dim, order))
                sorted_ops += 1
    return sorted_ops
