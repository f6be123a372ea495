"""Search spaces, architectures as data, block-string formats and the model zoo."""

from __future__ import annotations

from mnas import MnasError
from mnas.space.arch import Architecture, Block, round_filters
from mnas.space.blockstr import arch_from_timm, arch_from_tpu, arch_to_timm, arch_to_tpu
from mnas.space.decisions import Decision, SearchSpace
from mnas.space.mnasnet import MnasNetSpace
from mnas.space.registry import SPACES, load_space
from mnas.space import zoo

__all__ = ["Architecture", "Block", "Decision", "SearchSpace", "MnasNetSpace", "SPACES", "load_space", "resolve_arch",
           "round_filters", "arch_from_timm", "arch_from_tpu", "arch_to_timm", "arch_to_tpu", "zoo"]


def resolve_arch(text: str, width_multiplier: float = 1.0) -> tuple[str, Architecture]:
    """A zoo name, a canonical string, or a list of TPU or timm block strings -> (name, architecture)."""
    text = text.strip()
    if text.lower() in zoo.ZOO:
        return text.lower(), zoo.get(text, width_multiplier)
    if text.startswith("stem"):
        arch = Architecture.parse(text)
    elif text[:2] in ("ds", "ir", "cn") and text[2:3] == "_":
        arch = arch_from_timm(text)
    elif text.startswith("r") and "_" in text:
        arch = arch_from_tpu(text)
    else:
        raise MnasError(f"{text[:60]!r} is neither a zoo model ({', '.join(zoo.names())}) nor an "
                        "architecture string (canonical stem..:..:head.., or TPU/timm block strings)")
    return "custom", arch.scaled(width_multiplier)
