"""PyTorch builder, parameter and MAC counts, ONNX export."""

from mnas.model.builder import MnasNet, build
from mnas.model.profile import Profile, count_macs, count_params, profile

__all__ = ["MnasNet", "build", "Profile", "count_macs", "count_params", "profile"]
