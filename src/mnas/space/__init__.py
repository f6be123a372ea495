"""Search spaces, architectures as data, block-string formats and the model zoo."""

from __future__ import annotations

from mnas import MnasError
from mnas.registry import did_you_mean
from mnas.space.arch import Architecture, Block, round_filters
from mnas.space.blockstr import arch_from_timm, arch_from_tpu, arch_to_timm, arch_to_tpu
from mnas.space.decisions import Decision, SearchSpace
from mnas.space.mnasnet import MnasNetSpace
from mnas.space.registry import SPACES, load_space
from mnas.space import zoo

__all__ = ["Architecture", "Block", "Decision", "SearchSpace", "MnasNetSpace", "SPACES", "load_space", "resolve_arch",
           "round_filters", "split_width", "arch_from_timm", "arch_from_tpu", "arch_to_timm", "arch_to_tpu", "zoo"]


def split_width(text: str) -> tuple[str, float | None]:
    """``NAME@WIDTH`` (a zoo model at a width, e.g. ``mobilenet-v2@0.5``) -> (NAME, WIDTH); any other text ->
    (text, None). Architecture strings never hold an ``@``."""
    name, at, width_text = text.strip().partition("@")
    if not at:
        return name, None
    try:
        width = float(width_text)
    except ValueError:
        raise MnasError(f"{text.strip()[:60]!r}: the width after @ must be a number, e.g. mobilenet-v2@0.75") \
            from None
    if not 0 < width < float("inf"):
        raise MnasError(f"{text.strip()[:60]!r}: the width after @ must be > 0, e.g. mobilenet-v2@0.75")
    return name.strip(), width


def resolve_arch(text: str, width_multiplier: float = 1.0) -> tuple[str, Architecture]:
    """A zoo name (``NAME@WIDTH``: at that width), a canonical string, or a list of TPU or timm block strings
    -> (name, architecture). The one resolver of a model name: every command and the API take names here."""
    text, width = split_width(text)
    if width is not None:
        if text.lower() not in zoo.ZOO:
            raise MnasError(f"{text[:60]!r}{did_you_mean(text, zoo.names())}: NAME@WIDTH takes a zoo model "
                            f"({', '.join(zoo.names())})")
        if width_multiplier != 1.0:
            raise MnasError(f"{text}@{width:g} and a width multiplier of {width_multiplier:g}: give the width "
                            f"once ({text}@{width * width_multiplier:g})")
        return f"{text.lower()}@{width:g}", zoo.get(text, width)
    if text.lower() in zoo.ZOO:
        return text.lower(), zoo.get(text, width_multiplier)
    if text.startswith("stem"):
        arch = Architecture.parse(text)
    elif text[:2] in ("ds", "ir", "cn") and text[2:3] == "_":
        arch = arch_from_timm(text)
    elif text.startswith("r") and "_" in text:
        arch = arch_from_tpu(text)
    else:
        raise MnasError(f"{text[:60]!r}{did_you_mean(text, zoo.names())} is neither a zoo model "
                        f"({', '.join(zoo.names())}) nor an "
                        "architecture string (canonical stem..:..:head.., or TPU/timm block strings)")
    return "custom", arch.scaled(width_multiplier)
