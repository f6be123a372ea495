"""Latency backends by name. A spec is ``"prefix"`` or ``"prefix:argument"``; the registered object is called
with the argument (and any options ``get_backend`` is given) and returns the backend. Plugins register in the
``mnas.backends`` entry-point group, or with ``register_backend``."""

from __future__ import annotations

from typing import Any, Callable

from mnas.latency.base import LatencyBackend
from mnas.registry import Registry

BackendFactory = Callable[..., LatencyBackend]

BACKENDS: Registry[BackendFactory] = Registry(
    "latency backend", "mnas.backends", hint="(remote:URL[,URL] for device agents)", builtins={
        "onnxruntime": "mnas.latency.onnxruntime_backend:OnnxRuntimeBackend",
        "ort": "mnas.latency.onnxruntime_backend:OnnxRuntimeBackend",
        "torch": "mnas.latency.torch_backend:TorchBackend",
        "openvino": "mnas.latency.openvino_backend:OpenVinoBackend",
        "litert": "mnas.latency.litert_backend:LiteRtBackend",
        "tflite": "mnas.latency.litert_backend:LiteRtBackend",
        "remote": "mnas.latency.agent.remote:RemoteBackend.from_spec",
        "lut": "mnas.latency.lut.backend:LutBackend.from_spec",
    })


def register_backend(prefix: str, factory: BackendFactory | str) -> None:
    """Add a backend kind: ``factory(argument, **options)`` or a ``"module:attr"`` string naming it."""
    BACKENDS.register(prefix, factory)


def get_backend(spec: str | LatencyBackend, **options: Any) -> LatencyBackend:
    """``"onnxruntime"``, ``"remote:http://pi:8765"``, ``"lut:table.json"``, a plugin's name, or a backend
    (returned as it is). ``options`` go to the factory, e.g. ``token_file=`` for ``remote``."""
    if not isinstance(spec, str):
        return spec
    prefix, _, arg = spec.strip().partition(":")
    return BACKENDS.get(prefix.lower())(arg, **options)
