"""Will a measurement fit in this machine's memory? Estimated from sizes alone before anything is built, so
a resolution or batch that cannot fit is one clear line instead of minutes of swapping or the kernel's
out-of-memory killer."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from mnas import MnasError
from mnas.space.arch import Architecture

if TYPE_CHECKING:
    from torch import nn

BYTES_PER_VALUE = 4  # float32
# copies of the weights alive at once: the network, the exported file, the runtime's own
WEIGHT_COPIES = 3


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def arch_sizes(arch: Architecture, image: tuple[int, int, int], num_classes: int) -> tuple[int, int]:
    """(weights, values of the largest layer's input, intermediates and output) for one image of shape
    ``image`` (channels, height, width), following the network ``mnas.model.build`` makes, roughly."""
    c, h, w = image
    h, w = -(-h // 2), -(-w // 2)  # the stem's stride
    weights, peak, prev = 9 * c * arch.stem, c * image[1] * image[2] + arch.stem * h * w, arch.stem
    for b in arch.blocks:
        for i in range(b.repeats):
            stride = b.stride if i == 0 else 1
            oh, ow = -(-h // stride), -(-w // stride)
            if b.op == "cv":
                weights += b.kernel ** 2 * prev * b.out_ch
                values = prev * h * w + b.out_ch * oh * ow
            else:
                mid = (b.in_ch if i == 0 else b.out_ch) * b.expansion
                weights += prev * mid + b.kernel ** 2 * mid + mid * b.out_ch
                values = (prev + mid) * h * w + (mid + b.out_ch) * oh * ow
            peak, prev, h, w = max(peak, values), b.out_ch, oh, ow
    weights += prev * arch.head + arch.head * num_classes
    return weights, max(peak, (prev + arch.head) * h * w)


def estimate_bytes(model: nn.Module | Architecture, input_shape: tuple[int, ...], num_classes: int) -> int:
    """About how much memory timing ``model`` at ``input_shape`` takes at its peak: the weights
    ``WEIGHT_COPIES`` times, and the largest layer at the BatchNorm calibration batch (2 or more). For a
    module that is already built only its input and one output of the same size are counted."""
    batch = max(2, int(input_shape[0]))
    if isinstance(model, Architecture) and len(input_shape) == 4:
        weights, values = arch_sizes(model, tuple(int(x) for x in input_shape[1:]), num_classes)
    else:
        weights, values = 0, 2 * math.prod(int(x) for x in input_shape[1:])
    return BYTES_PER_VALUE * (WEIGHT_COPIES * weights + batch * values)


def check_fits(model: nn.Module | Architecture, input_shape: tuple[int, ...], num_classes: int) -> None:
    """MnasError when the estimate exceeds this machine's RAM."""
    have = physical_memory()
    need = estimate_bytes(model, input_shape, num_classes)
    if have is not None and need > have:
        shape = "x".join(str(int(x)) for x in input_shape)
        raise MnasError(f"timing at input {shape} needs about {gigabytes(need)} of memory, more than this "
                        f"machine's {gigabytes(have)}: use a smaller resolution or batch")


def gigabytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
