"""The two published block-string dialects: TPU reference (``r1_k3_s11_e1_i32_o16_noskip``) and timm
(``ds_r1_k3_s1_e1_c16_noskip``). Both describe blocks only; the stem (its width and stride) and the head
come separately.

timm strings are read and written with timm's own rules (``_timm_layers``), and only where timm builds
exactly the layers mnas builds: a block timm would build differently (a regular conv with squeeze-excite,
a width timm rounds, ...) has no timm string, and the error says why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mnas import MnasError
from mnas.space.arch import Architecture, Block, _float, _fmt, _int, parse_fields, round_filters

_TIMM_OPS = {"ds": "ds", "ir": "ir", "cn": "cv"}


@dataclass(frozen=True)
class _Layer:
    """One layer as timm's block classes see it: two layers that agree here hold the same weights and
    compute the same function. ``kind`` is a timm block type; ``se`` the squeeze-excite width (0: none)."""
    kind: str
    in_ch: int
    mid: int
    se: int
    out: int
    kernel: int
    stride: int
    residual: bool


def split_blocks(text: str | Iterable[str]) -> list[str]:
    if isinstance(text, str):
        text = text.replace(",", " ").split()
    return [t.strip() for t in text if t.strip()]


def block_to_tpu(b: Block) -> str:
    if b.op == "cv":
        raise MnasError("a regular-conv block has no TPU block string (the TPU format knows MBConv only)")
    parts = [f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}{b.stride}", f"e{b.expansion}",
             f"i{b.in_ch}", f"o{b.out_ch}"]
    return "_".join(parts + _tail(b))


def block_from_tpu(text: str) -> Block:
    kv = parse_fields(text.strip().split("_"), text)
    _check_keys(kv, {"r", "k", "s", "e", "i", "o"}, text)
    s = kv["s"]
    if len(s) != 2 or not s.isdigit():
        raise MnasError(f"stride field in {text!r} must have exactly two digits, e.g. s22")
    if s[0] != s[1]:
        raise MnasError(f"non-square stride {s} in {text!r} is not supported")
    e = _int(kv, "e", text)
    return Block("ds" if e == 1 else "ir", _int(kv, "r", text), _int(kv, "k", text), int(s[0]), e,
                 _int(kv, "i", text), _int(kv, "o", text), _float(kv.get("se", "0"), text),
                 "none" if "noskip" in kv else "identity")


def block_to_timm(b: Block, actual_in: int) -> str:
    """The timm string that builds exactly ``b``'s layers when the block receives ``actual_in`` channels
    (timm infers a block's input from the previous output), or MnasError saying why none does."""
    if b.skip == "pool":
        raise MnasError("a pooling-skip block has no timm block string (timm has no such op)")
    mnas = _mnas_layers(b, actual_in)
    kind = mnas[0].kind  # an MBConv without expansion is timm's ds: timm's ir always expands
    head = [kind, f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}", f"e{b.expansion}", f"c{b.out_ch}"]
    head += [f"se{_fmt(b.se)}"] if b.se else []
    # timm's cn adds a residual only when told `skip`, ds and ir unless told `noskip`, and both judge on
    # the real input width where mnas judges on the declared one: the first flag that agrees is written
    flags = ["noskip"] if b.skip == "none" else ["skip", "noskip"] if kind == "cn" else ["", "noskip"]
    reasons = []
    for flag in flags:
        timm = _timm_layers(kind, b.repeats, b.kernel, b.stride, b.expansion, b.out_ch, b.se, flag, actual_in)
        if not (reason := _difference(mnas, timm)):
            return "_".join(head + ([flag] if flag else []))
        reasons.append(reason)
    raise MnasError(f"timm would build it differently: {reasons[0]}")


def block_from_timm(text: str, in_ch: int) -> Block:
    """timm's reading of ``text`` (receiving ``in_ch`` channels) as a block, or MnasError where mnas would
    build something else (a cn block with squeeze-excite, which timm drops; a width timm rounds, ...)."""
    fields = text.strip().split("_")
    if fields[0] not in _TIMM_OPS:
        raise MnasError(f"timm block {text!r} must start with one of {', '.join(_TIMM_OPS)}")
    kv = parse_fields(fields[1:], text)
    _check_keys(kv, {"r", "k", "s", "c"}, text, optional={"e", "skip"})
    if "skip" in kv and "noskip" in kv:
        raise MnasError(f"timm block {text!r} has both skip and noskip")
    kind, flag = fields[0], "skip" if "skip" in kv else "noskip" if "noskip" in kv else ""
    skip = "identity" if flag == "skip" or (kind != "cn" and flag != "noskip") else "none"
    b = Block(_TIMM_OPS[kind], _int(kv, "r", text), _int(kv, "k", text), _int(kv, "s", text),
              _int(kv, "e", text) if "e" in kv else 1, in_ch, _int(kv, "c", text),
              _float(kv.get("se", "0"), text), skip)
    timm = _timm_layers(kind, b.repeats, b.kernel, b.stride, b.expansion, b.out_ch, b.se, flag, in_ch)
    if reason := _difference(_mnas_layers(b, in_ch), timm):
        raise MnasError(f"timm block {text!r} has no exact mnas form: {reason}")
    return b


def _mnas_layers(b: Block, actual_in: int) -> list[_Layer]:
    """What mnas.model.builder.Layer makes of each layer of ``b`` (tests/test_timm_interop.py checks that
    these widths give the built model's parameter count)."""
    kind = "cn" if b.op == "cv" else "ir" if b.expansion > 1 else "ds"
    layers = []
    for i in range(b.repeats):
        real_in, declared = (actual_in, b.in_ch) if i == 0 else (b.out_ch, b.out_ch)
        mid = {"cn": b.out_ch, "ds": real_in, "ir": declared * b.expansion}[kind]
        se = max(1, int(declared * b.se)) if b.se else 0
        layers.append(_Layer(kind, real_in, mid, se, b.out_ch, b.kernel, b.stride if i == 0 else 1,
                             b.shortcut(i) == "identity"))
    return layers


def _timm_layers(kind: str, repeats: int, kernel: int, stride: int, expansion: float, out: int, se: float,
                 flag: str, in_ch: int) -> list[_Layer]:
    """What timm's EfficientNetBuilder makes of one block string at channel multiplier 1.0
    (timm/models/_efficientnet_builder.py: _decode_block_str, _make_block; _efficientnet_blocks.py)."""
    out = round_filters(out, 1.0)  # round_channels: timm's make_divisible is the reference rule
    layers = []
    for i in range(repeats):
        real_in, s = (in_ch, stride) if i == 0 else (out, 1)
        if kind == "cn":  # ConvBnAct: no squeeze-excite, and `se` is ignored
            mid, se_width, allowed = out, 0, flag == "skip"
        else:
            mid = real_in if kind == "ds" else round_filters(real_in * expansion, 1.0)
            # se_ratio is divided by the expansion, then SqueezeExcite rounds mid * ratio with round()
            se_width = round(mid * (se / (expansion if kind == "ir" else 1.0))) if se else 0
            allowed = flag != "noskip"
        layers.append(_Layer(kind, real_in, mid, se_width, out, kernel, s,
                             allowed and s == 1 and real_in == out))
    return layers


def _difference(mnas: list[_Layer], timm: list[_Layer]) -> str:
    """The first way timm's layers differ from mnas's, in words, or "" where they are the same."""
    for n, (m, t) in enumerate(zip(mnas, timm), 1):
        where = f"layer {n}: " if len(mnas) > 1 else ""
        if m.kind != t.kind:  # the one case: an ir block at e1
            return "timm's ir block (InvertedResidual) keeps a 1x1 expansion conv at e1, which mnas's ir drops"
        if m.out != t.out:
            return f"timm rounds the output width {m.out} to {t.out} (a multiple of 8)"
        if m.se != t.se:
            if t.kind == "cn":
                return "timm's cn block (ConvBnAct) has no squeeze-excite"
            return f"{where}squeeze-excite width {t.se} in timm, {m.se} in mnas"
        if m.mid != t.mid:
            return f"{where}expansion width {t.mid} in timm, {m.mid} in mnas"
        if m.residual != t.residual:
            return f"{where}timm {'adds' if t.residual else 'drops'} the residual that mnas " \
                   f"{'drops' if t.residual else 'adds'}"
    return ""


def arch_to_tpu(arch: Architecture) -> list[str]:
    return [block_to_tpu(b) for b in arch.blocks]


def arch_from_tpu(blocks: str | Iterable[str], stem: int = 32, head: int = 1280,
                  stem_stride: int = 2) -> Architecture:
    return Architecture(tuple(block_from_tpu(t) for t in split_blocks(blocks)), stem, head, stem_stride)


def arch_to_timm(arch: Architecture) -> list[str]:
    """One timm string per block (one stage each), or MnasError naming the first block timm would build
    differently from any string."""
    out, prev = [], arch.stem
    for n, b in enumerate(arch.blocks, 1):
        try:
            out.append(block_to_timm(b, prev))
        except MnasError as e:
            raise MnasError(f"block {n} ({b.to_string()}): {e}") from None
        prev = b.out_ch
    return out


def arch_from_timm(blocks: str | Iterable[str], stem: int = 32, head: int = 1280,
                   stem_stride: int = 2) -> Architecture:
    parsed, prev = [], stem
    for t in split_blocks(blocks):
        parsed.append(block_from_timm(t, prev))
        prev = parsed[-1].out_ch
    return Architecture(tuple(parsed), stem, head, stem_stride)


def _tail(b: Block) -> list[str]:
    if b.skip == "pool":
        raise MnasError("a pooling-skip block has no TPU block string (the TPU format has no such op)")
    tail = [f"se{_fmt(b.se)}"] if b.se else []
    return tail + (["noskip"] if b.skip == "none" else [])


def _check_keys(kv: dict, required: set[str], text: str, optional: frozenset | set = frozenset()) -> None:
    if missing := required - kv.keys():
        raise MnasError(f"block {text!r} lacks field(s) {', '.join(sorted(missing))}")
    if extra := set(kv) - required - set(optional) - {"se", "noskip"}:
        raise MnasError(f"block {text!r} has unknown field(s) {', '.join(sorted(extra))}")
