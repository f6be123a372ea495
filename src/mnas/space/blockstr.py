"""The two published block-string dialects: TPU reference (``r1_k3_s11_e1_i32_o16_noskip``) and timm
(``ds_r1_k3_s1_e1_c16_noskip``). Both describe blocks only; the stem and head come separately."""

from __future__ import annotations

from collections.abc import Iterable

from mnas import MnasError
from mnas.space.arch import Architecture, Block, _float, _fmt, _int, parse_fields

_TIMM_OPS = {"ds": "ds", "ir": "ir", "cn": "cv"}
_TIMM_NAMES = {v: k for k, v in _TIMM_OPS.items()}


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
    """timm infers a block's input from the previous output; where the declared input differs and that
    changes the residual rule (mnasnet-small's first block) ``noskip`` keeps the same network."""
    parts = [_TIMM_NAMES[b.op], f"r{b.repeats}", f"k{b.kernel}", f"s{b.stride}", f"e{b.expansion}",
             f"c{b.out_ch}"]
    tail = _tail(b)
    timm_adds = b.stride == 1 and actual_in == b.out_ch  # timm's rule, on the real input width
    if b.skip == "identity" and actual_in != b.in_ch and (b.shortcut(0) == "identity") != timm_adds:
        tail.append("noskip")
    return "_".join(parts + tail)


def block_from_timm(text: str, in_ch: int) -> Block:
    fields = text.strip().split("_")
    if fields[0] not in _TIMM_OPS:
        raise MnasError(f"timm block {text!r} must start with one of {', '.join(_TIMM_OPS)}")
    kv = parse_fields(fields[1:], text)
    _check_keys(kv, {"r", "k", "s", "c"}, text, optional={"e"})
    op = _TIMM_OPS[fields[0]]
    return Block(op, _int(kv, "r", text), _int(kv, "k", text), _int(kv, "s", text),
                 _int(kv, "e", text) if "e" in kv else 1, in_ch, _int(kv, "c", text),
                 _float(kv.get("se", "0"), text), "none" if "noskip" in kv else "identity")


def arch_to_tpu(arch: Architecture) -> list[str]:
    return [block_to_tpu(b) for b in arch.blocks]


def arch_from_tpu(blocks: str | Iterable[str], stem: int = 32, head: int = 1280) -> Architecture:
    return Architecture(tuple(block_from_tpu(t) for t in split_blocks(blocks)), stem, head)


def arch_to_timm(arch: Architecture) -> list[str]:
    out, prev = [], arch.stem
    for b in arch.blocks:
        out.append(block_to_timm(b, prev))
        prev = b.out_ch
    return out


def arch_from_timm(blocks: str | Iterable[str], stem: int = 32, head: int = 1280) -> Architecture:
    parsed, prev = [], stem
    for t in split_blocks(blocks):
        parsed.append(block_from_timm(t, prev))
        prev = parsed[-1].out_ch
    return Architecture(tuple(parsed), stem, head)


def _tail(b: Block) -> list[str]:
    if b.skip == "pool":
        raise MnasError("a pooling-skip block has no TPU or timm block string (neither format has the op)")
    tail = [f"se{_fmt(b.se)}"] if b.se else []
    return tail + (["noskip"] if b.skip == "none" else [])


def _check_keys(kv: dict, required: set[str], text: str, optional: frozenset | set = frozenset()) -> None:
    if missing := required - kv.keys():
        raise MnasError(f"block {text!r} lacks field(s) {', '.join(sorted(missing))}")
    if extra := set(kv) - required - set(optional) - {"se", "noskip"}:
        raise MnasError(f"block {text!r} has unknown field(s) {', '.join(sorted(extra))}")
