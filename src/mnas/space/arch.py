"""Architectures as plain data: a stem, a tuple of blocks and a head, with a canonical string.

Canonical form: ``stem32:ds_r1_k3_s1_e1_i32_o16_noskip:ir_r2_k3_s2_e6_i16_o24:...:head1280``.
The stem is a 3x3 conv of stride 2 (ImageNet's) unless its field says otherwise: ``stem32s1`` is a stride-1
stem (the CIFAR variant, docs/search-space.md). The stride is written only when it is not 2, so every
string, digest and stored experiment from before the field existed reads and writes as it did; the parser
also accepts an explicit ``stem32s2``, which it writes back as ``stem32``.
Each block field is a letter key followed by its value, like the TPU block strings, plus a leading
op code (``cv`` regular conv, ``ds`` depthwise-separable, ``ir`` MBConv) because the TPU strings cannot
name a regular conv. ``i`` is the *declared* input width: the residual rule and the expansion width use
it, as the reference does (it differs from the real input only in mnasnet-small's first block). A declared
``i`` may differ from the real input only where it changes nothing but the residual rule (expansion 1, no SE).
The skip op is ``identity`` unless the block says ``noskip`` or ``poolskip`` (mnas's reading of the
paper's pooling skip, which neither published dialect can write: docs/search-space.md, "Ops").
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace

from mnas import MnasError

OPS = ("cv", "ds", "ir")
SKIPS = ("none", "identity", "pool")
SKIP_FLAGS = {"none": "noskip", "pool": "poolskip"}  # identity is the unmarked default
_FIELD = re.compile(r"^([a-z]+)(\d.*)?$")
_STEM = re.compile(r"^stem(\d+)(?:s(\d+))?$")
STEM_STRIDES = (1, 2)
DEFAULT_STEM_STRIDE = 2  # the ImageNet stem, and the one a canonical string leaves unwritten
# Sane maxima, far above any published MnasNet-family network (widths <= 2560, expansion 6, kernel 7,
# 4 layers a block, ~20 layers): a short string must not ask for a network that takes minutes and
# gigabytes to build. Memory at a given resolution is checked where a network is timed (mnas.latency).
MAX_REPEATS, MAX_KERNEL, MAX_EXPANSION, MAX_WIDTH, MAX_LAYERS = 32, 15, 16, 4096, 256


@dataclass(frozen=True)
class Block:
    op: str
    repeats: int
    kernel: int
    stride: int
    expansion: int
    in_ch: int
    out_ch: int
    se: float = 0.0
    skip: str = "identity"

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise MnasError(f"unknown block op {self.op!r}: expected one of {', '.join(OPS)}")
        if self.repeats < 1 or self.kernel < 1 or self.kernel % 2 == 0:
            raise MnasError(f"bad block {self.to_string()}: repeats must be >= 1 and the kernel odd")
        if self.stride not in (1, 2):
            raise MnasError(f"bad stride {self.stride}: expected 1 or 2")
        if self.op == "ds" and self.expansion != 1:
            raise MnasError("a depthwise-separable block (ds) has expansion 1")
        if self.expansion < 1 or self.in_ch < 1 or self.out_ch < 1 or not 0 <= self.se <= 1:
            raise MnasError(f"bad block {self.to_string()}: widths and expansion must be >= 1, se in [0, 1]")
        if self.skip not in SKIPS:
            raise MnasError(f"unknown skip op {self.skip!r}: expected one of {', '.join(SKIPS)}")
        for name, value, limit in (("repeats", self.repeats, MAX_REPEATS), ("kernel", self.kernel, MAX_KERNEL),
                                   ("expansion", self.expansion, MAX_EXPANSION), ("input width", self.in_ch, MAX_WIDTH),
                                   ("output width", self.out_ch, MAX_WIDTH)):
            if value > limit:
                raise MnasError(f"block {self.to_string()[:80]}: {name} {value} is over the maximum of {limit}")

    def shortcut(self, layer: int) -> str:
        """What layer ``layer`` adds to its output: "identity" by the reference rule (allowed, stride 1,
        declared i == o); with the pooling skip, "pool" on the layers where identity cannot apply;
        otherwise "none"."""
        stride = self.stride if layer == 0 else 1
        in_ch = self.in_ch if layer == 0 else self.out_ch
        if self.skip == "none":
            return "none"
        if stride == 1 and in_ch == self.out_ch:
            return "identity"
        return "pool" if self.skip == "pool" else "none"

    def to_string(self) -> str:
        parts = [self.op, f"r{self.repeats}", f"k{self.kernel}", f"s{self.stride}",
                 f"e{self.expansion}", f"i{self.in_ch}", f"o{self.out_ch}"]
        if self.se:
            parts.append(f"se{_fmt(self.se)}")
        if self.skip in SKIP_FLAGS:
            parts.append(SKIP_FLAGS[self.skip])
        return "_".join(parts)

    @classmethod
    def parse(cls, text: str) -> Block:
        fields = text.strip().split("_")
        op = fields[0]
        if op not in OPS:
            raise MnasError(f"block {text!r} must start with an op code ({', '.join(OPS)})")
        kv = parse_fields(fields[1:], text)
        required = {"r", "k", "s", "e", "i", "o"}
        if missing := required - kv.keys():
            raise MnasError(f"block {text!r} lacks field(s) {', '.join(sorted(missing))}")
        if extra := set(kv) - required - {"se", *SKIP_FLAGS.values()}:
            raise MnasError(f"block {text!r} has unknown field(s) {', '.join(sorted(extra))}")
        return cls(op, _int(kv, "r", text), _int(kv, "k", text), _int(kv, "s", text),
                   _int(kv, "e", text), _int(kv, "i", text), _int(kv, "o", text),
                   _float(kv.get("se", "0"), text), skip_from_flags(kv, text))


@dataclass(frozen=True)
class Architecture:
    blocks: tuple[Block, ...]
    stem: int = 32
    head: int = 1280
    stem_stride: int = DEFAULT_STEM_STRIDE

    def __post_init__(self) -> None:
        if not self.blocks:
            raise MnasError("an architecture needs at least one block")
        if self.stem_stride not in STEM_STRIDES:
            raise MnasError(f"bad stem stride {self.stem_stride}: expected 1 (CIFAR-size inputs) or 2")
        if not (1 <= self.stem <= MAX_WIDTH and 1 <= self.head <= MAX_WIDTH):
            raise MnasError(f"stem and head widths must be between 1 and {MAX_WIDTH}")
        if self.layers > MAX_LAYERS:
            raise MnasError(f"{self.layers} layers is over the maximum of {MAX_LAYERS}")
        width = self.stem
        for n, b in enumerate(self.blocks, 1):
            # the identity skip adds the real input to the output: the widths must agree, or the
            # network cannot run (the declared i may differ from the real input only without it)
            if b.shortcut(0) == "identity" and width != b.out_ch:
                raise MnasError(f"block {n} ({b.to_string()}) adds its input to its output, but its input has "
                                f"{width} channels, not {b.out_ch}: fix i, or mark the block noskip")
            # a declared i other than the real input is the reference's way to turn a residual off
            # (mnasnet-small's first block); where it would also size layers (the expansion, SE), the
            # string means two networks at once: refused
            if b.in_ch != width and (b.expansion != 1 or b.se):
                sized = "expansion" if b.expansion != 1 else "squeeze-excite"
                raise MnasError(f"block {n} ({b.to_string()[:80]}) declares i{b.in_ch} but its input has {width} "
                                f"channels, and its {sized} width would come from i: write i{width}")
            width = b.out_ch

    @property
    def canonical(self) -> str:
        stride = "" if self.stem_stride == DEFAULT_STEM_STRIDE else f"s{self.stem_stride}"
        return ":".join([f"stem{self.stem}{stride}", *(b.to_string() for b in self.blocks), f"head{self.head}"])

    @property
    def digest(self) -> str:
        """A stable short hash of the canonical string (same on every machine and Python run)."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:12]

    @property
    def layers(self) -> int:
        return sum(b.repeats for b in self.blocks)

    def __str__(self) -> str:
        return self.canonical

    @classmethod
    def parse(cls, text: str) -> Architecture:
        parts = [p for p in text.strip().split(":") if p]
        if len(parts) < 3 or not parts[0].startswith("stem") or not parts[-1].startswith("head"):
            raise MnasError(f"not a canonical architecture string: {text[:60]!r} "
                            "(expected stemN:<block>:...:headN)")
        m = _STEM.match(parts[0])
        if not m:
            raise MnasError(f"bad stem field {parts[0][:30]!r} in {text[:60]!r}: write stemN (stride 2) or "
                            "stemNs1 (stride 1), e.g. stem32s1")
        head = _int({"x": parts[-1][4:]}, "x", text)
        stride = int(m.group(2)) if m.group(2) is not None else DEFAULT_STEM_STRIDE
        return cls(tuple(Block.parse(p) for p in parts[1:-1]), int(m.group(1)), head, stride)

    def scaled(self, multiplier: float, scale_head: bool = False) -> Architecture:
        """Width multiplier with the reference rounding; the head stays unless scale_head (MobileNetV2).
        Strides, the stem's included, are untouched."""
        if not (math.isfinite(multiplier) and multiplier > 0):
            raise MnasError(f"width multiplier must be a finite number > 0, got {multiplier}")
        if multiplier == 1.0:
            return self
        blocks = tuple(replace(b, in_ch=round_filters(b.in_ch, multiplier),
                               out_ch=round_filters(b.out_ch, multiplier)) for b in self.blocks)
        head = round_filters(self.head, multiplier) if scale_head and multiplier > 1 else self.head
        return Architecture(blocks, round_filters(self.stem, multiplier), head, self.stem_stride)


def round_filters(filters: int, multiplier: float, divisor: int = 8, min_depth: int = 8) -> int:
    """The reference rule: nearest multiple of 8, at least 8, never below 90% of the scaled width."""
    scaled = filters * multiplier
    new = max(min_depth, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def skip_from_flags(kv: dict[str, str], text: str) -> str:
    given = [skip for skip, flag in SKIP_FLAGS.items() if flag in kv]
    if len(given) > 1:
        raise MnasError(f"block {text!r} has both noskip and poolskip")
    return given[0] if given else "identity"


def parse_fields(fields: list[str], text: str) -> dict[str, str]:
    kv: dict[str, str] = {}
    for f in fields:
        if f in ("noskip", "skip", "poolskip"):
            kv[f] = ""
            continue
        m = _FIELD.match(f)
        if not m or m.group(2) is None:
            raise MnasError(f"bad field {f!r} in block {text!r}")
        if m.group(1) in kv:
            raise MnasError(f"field {m.group(1)!r} repeated in block {text!r}")
        kv[m.group(1)] = m.group(2)
    return kv


def _int(kv: dict[str, str], key: str, text: str) -> int:
    try:
        return int(kv[key])
    except ValueError:
        raise MnasError(f"field {key!r} of {text!r} must be an integer, got {kv[key]!r}") from None


def _float(value: str, text: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise MnasError(f"se ratio in {text!r} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise MnasError(f"se ratio in {text!r} must be finite")
    return out


def _fmt(x: float) -> str:
    return repr(float(x)).rstrip("0").rstrip(".") if x != int(x) else str(int(x))
