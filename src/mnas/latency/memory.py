"""Will a measurement fit in this machine's memory? Estimated from the network's shapes
(``mnas.model.memory``) before anything real is built, so a resolution or batch that cannot fit is one clear
line instead of minutes of swapping or the kernel's out-of-memory killer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mnas.model.memory import BYTES_PER_VALUE, check_fits as _check_fits, footprint
from mnas.space.arch import Architecture

if TYPE_CHECKING:
    from torch import nn

# copies of the weights alive at once: the network, the exported file, the runtime's own
WEIGHT_COPIES = 3


def estimate_bytes(model: nn.Module | Architecture, input_shape: tuple[int, ...], num_classes: int) -> int:
    """About how much memory timing ``model`` at ``input_shape`` takes at its peak: the weights
    ``WEIGHT_COPIES`` times, and the largest layer at the BatchNorm calibration batch (2 or more). For a
    module that is already built only its input and one output of the same size are counted."""
    shape = (max(2, int(input_shape[0])), *input_shape[1:])
    if isinstance(model, Architecture) and len(input_shape) == 4:
        f = footprint(model, shape, num_classes)
        weights, values = f.weights, f.peak_values
    else:
        weights, values = 0, 2 * shape[0] * math.prod(int(x) for x in input_shape[1:])
    return BYTES_PER_VALUE * (WEIGHT_COPIES * weights + values)


def check_fits(model: nn.Module | Architecture, input_shape: tuple[int, ...], num_classes: int) -> None:
    """MnasError when the estimate exceeds this machine's RAM."""
    shape = "x".join(str(int(x)) for x in input_shape)
    _check_fits(f"timing at input {shape}", estimate_bytes(model, input_shape, num_classes),
                "use a smaller resolution or batch")
