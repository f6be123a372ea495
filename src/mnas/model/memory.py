"""How much memory a network needs, from its shapes alone: the model is built on PyTorch's meta device (no
storage) and one forward pass records every layer's output size. Timing and training both refuse a size
this machine cannot hold before building anything real (one clear line instead of the OOM killer)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mnas import MnasError
from mnas.space.arch import Architecture

BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True)
class Footprint:
    weights: int  # parameters
    peak_values: int  # the largest layer's input plus output, for the whole batch
    total_values: int  # every layer's output for the whole batch (what training keeps for backward)


def footprint(arch: Architecture, input_shape: tuple[int, ...], num_classes: int) -> Footprint:
    import torch

    from mnas.model.builder import build

    batch, in_chans, h, w = (int(x) for x in input_shape)
    try:
        with torch.device("meta"):
            model = build(arch, num_classes, in_chans).eval()
        sizes: list[tuple[int, int]] = []

        def record(module, inputs, output) -> None:
            sizes.append((inputs[0].numel() if inputs else 0, output.numel()))

        for m in model.modules():
            if not any(m.children()):
                m.register_forward_hook(record)
        with torch.no_grad():
            model(torch.empty(batch, in_chans, h, w, device="meta"))
    except RuntimeError as e:  # sizes past what a tensor can index
        raise MnasError(f"a network this size cannot be built: {str(e).splitlines()[0][:160]}") from e
    weights = sum(p.numel() for p in model.parameters())
    return Footprint(weights, max((i + o for i, o in sizes), default=0), sum(o for _, o in sizes))


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(what: str, need_bytes: int, fix: str) -> None:
    """MnasError naming ``what`` and the estimate when ``need_bytes`` exceeds this machine's RAM."""
    have = physical_memory()
    if have is not None and need_bytes > have:
        raise MnasError(f"{what} needs about {gigabytes(need_bytes)} of memory, more than this machine's "
                        f"{gigabytes(have)}: {fix}")


def gigabytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
