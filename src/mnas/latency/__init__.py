"""Platform-aware latency: real runtimes, a noise-robust timing protocol, a cache and device agents."""

from mnas.latency.base import (BACKENDS, LOCAL_BACKENDS, LatencyBackend, LatencyResult, LatencySettings,
                               backend_identity, cache_key, get_backend, measure, register_backend)

__all__ = ["BACKENDS", "LOCAL_BACKENDS", "LatencyBackend", "LatencyResult", "LatencySettings",
           "backend_identity", "cache_key", "get_backend", "measure", "register_backend"]
