"""What the in-process backends share: build, calibrate, export, prepare a runner, time it."""

from __future__ import annotations

import copy
import io
import threading
from typing import TYPE_CHECKING, Any, Callable

from mnas import MnasError
from mnas.latency.base import LatencyResult, LatencySettings
from mnas.latency.fingerprint import fingerprint
from mnas.latency.protocol import calibrate_bn, make_result, time_calls, torch_threads

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from mnas.space.arch import Architecture

Runner = Callable[[], object]
# torch.onnx.export keeps global state: two exports at once (a remote pool's threads) corrupt each other
EXPORT_LOCK = threading.RLock()


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], opset: int = 17) -> bytes:
    """ONNX at any input shape (mnas.model.export only does square images), legacy exporter (dynamo=False)."""
    import torch

    buf = io.BytesIO()
    with EXPORT_LOCK, torch.no_grad():
        torch.onnx.export(model.eval(), (torch.zeros(input_shape),), buf, input_names=["input"],
                          output_names=["output"], opset_version=opset, dynamo=False)
    return buf.getvalue()


def random_input(input_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    import numpy as np
    return np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)


class LocalBackend:
    """Subclasses set ``name`` and ``model_format`` ("onnx", "tflite" or None) and implement
    ``runtime_version``, ``load`` (model bytes -> (runner factory)) and optionally ``export``."""

    name = "local"
    model_format: str | None = "onnx"

    def runtime_version(self) -> str:
        raise NotImplementedError

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        return {"backend": self.name, "runtime_version": self.runtime_version(), "device": fingerprint()["id"]}

    # --- the model file path: export (client) and load (client or agent) ----------------------------
    def export(self, model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        return onnx_bytes(model, input_shape)

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Callable[[np.ndarray], Any], tuple[int, ...]]:
        """Model bytes -> (infer(x) -> outputs, the model's input shape). Raise MnasError if not a model."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...],
                settings: LatencySettings) -> Callable[[np.ndarray], Any]:
        infer, _ = self.load(self.export(model, input_shape), settings)
        return infer

    # --- measuring --------------------------------------------------------------------------------------
    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        from mnas.model import build

        settings = settings or LatencySettings()
        model = build(arch, num_classes=settings.num_classes, in_chans=settings.in_chans)
        return self._measure(model, settings.input_shape(), settings, arch.canonical, copy_model=False)

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        return self._measure(model, tuple(input_shape), settings or LatencySettings(), None, copy_model=True)

    def _measure(self, model: nn.Module, input_shape: tuple[int, ...], settings: LatencySettings,
                 arch: str | None, copy_model: bool) -> LatencyResult:
        with torch_threads(settings.threads):
            if settings.calibrate_bn:
                if copy_model:  # never change the caller's BatchNorm statistics
                    model = copy.deepcopy(model)
                calibrate_bn(model, input_shape)
            model.eval()
            infer = self.prepare(model, input_shape, settings)
        return self.time_runner(infer, input_shape, settings, arch)

    def time_runner(self, infer: Callable[[np.ndarray], Any], input_shape: tuple[int, ...],
                    settings: LatencySettings, arch: str | None = None, extra: dict | None = None) -> LatencyResult:
        x = random_input(input_shape)
        timing = time_calls(lambda: infer(x), settings)
        return make_result(timing, settings, input_shape, self.name, self.runtime_version(), fingerprint(),
                           arch, {**self.extra(), **(extra or {})})

    def measure_bytes(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        """Time a model file (the device agent's path)."""
        infer, shape = self.load(data, settings)
        return self.time_runner(infer, shape, settings)

    def extra(self) -> dict[str, Any]:
        return {}


def static_shape(dims: list, what: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in dims)
    except (TypeError, ValueError):
        raise MnasError(f"{what}: the model's input shape {dims} is not static; export it at a fixed shape") from None
    if not shape or any(d < 1 for d in shape):
        raise MnasError(f"{what}: the model's input shape {dims} is not static; export it at a fixed shape")
    return shape
