"""Latency lookup tables built on the user's own backend, and ``lut:PATH`` as a latency backend."""

from mnas.latency.lut.backend import LutBackend
from mnas.latency.lut.build import build_table, calibrate_table
from mnas.latency.lut.evaluate import evaluate, metrics
from mnas.latency.lut.layers import LayerSpec, arch_layers, space_layers
from mnas.latency.lut.table import LatencyTable

__all__ = ["LatencyTable", "LayerSpec", "LutBackend", "arch_layers", "build_table", "calibrate_table", "evaluate",
           "metrics", "space_layers"]
