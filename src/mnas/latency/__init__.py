"""Platform-aware latency: real runtimes, a noise-robust timing protocol, a cache and device agents."""

from mnas.latency.base import LatencyBackend, LatencyResult
from mnas.latency.cache import LatencyCache, measure
from mnas.latency.registry import BACKENDS, get_backend, register_backend
from mnas.latency.settings import LatencyConfig, LatencySettings

__all__ = ["BACKENDS", "LatencyBackend", "LatencyCache", "LatencyConfig", "LatencyResult", "LatencySettings",
           "get_backend", "measure", "register_backend"]
