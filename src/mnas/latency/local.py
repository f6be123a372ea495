"""What the in-process backends share: turn a network into a runner, time it, describe the result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from mnas import MnasError
from mnas.latency.base import LatencyResult
from mnas.latency.fingerprint import fingerprint
from mnas.latency.protocol import check_pin_core, make_result, model_file, time_calls
from mnas.latency.settings import LatencySettings

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from mnas.space.arch import Architecture

Infer = Callable[["np.ndarray"], Any]


def random_input(input_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    import numpy as np
    return np.random.default_rng(seed).standard_normal(input_shape, dtype=np.float32)


class LocalBackend:
    """Subclasses set ``name`` and ``model_format`` and implement ``runtime_version`` and ``load`` (model file
    -> runner); a backend that takes no files (``model_format = None``) overrides ``runner`` instead.
    ``load`` refuses files that name other files; the device agent also sets ``max_tensor_bytes``, the
    largest tensor a file it is sent may declare (``mnas.latency.agent.model_files``)."""

    name = "local"
    model_format: str | None = "onnx"
    input_layout = "NCHW"  # of the files ``load`` runs (``runner`` always takes NCHW, as PyTorch does)
    max_tensor_bytes: int | None = None

    def __init__(self, arg: str = "") -> None:
        if arg:
            raise MnasError(f"the {self.name} backend takes no argument, got {self.name}:{arg}")

    def runtime_version(self) -> str:
        raise NotImplementedError

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        return {"backend": self.name, "runtime_version": self.runtime_version(), "device": fingerprint()["id"]}

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Infer, tuple[int, ...]]:
        """Model file -> (infer(x) -> outputs, the model's input shape). MnasError if it is not a model."""
        raise NotImplementedError

    def runner(self, model: nn.Module | Architecture, input_shape: tuple[int, ...],
               settings: LatencySettings) -> Infer:
        """The network, prepared for timing (``protocol.timing_model``), ready to run in this runtime."""
        infer, _ = self.load(model_file(model, self.model_format, input_shape, settings), settings)
        return infer

    # --- measuring --------------------------------------------------------------------------------------
    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        settings = settings or LatencySettings()
        check_pin_core(settings.pin_core)  # before the network is built and exported, not after
        infer = self.runner(arch, settings.input_shape(), settings)
        return self.time_runner(infer, settings.input_shape(), settings, arch.canonical)

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        settings = settings or LatencySettings()
        check_pin_core(settings.pin_core)
        return self.time_runner(self.runner(model, tuple(input_shape), settings), tuple(input_shape), settings)

    def measure_file(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        """Time a model file (the device agent's path); its input shape comes from the file."""
        infer, shape = self.load(data, settings)
        nhwc = self.input_layout == "NHWC" and len(shape) == 4
        return self.time_runner(infer, shape, settings, resolution=int(shape[1]) if nhwc else None)

    def time_runner(self, infer: Infer, input_shape: tuple[int, ...], settings: LatencySettings,
                    arch: str | None = None, extra: dict | None = None,
                    resolution: int | None = None) -> LatencyResult:
        x = random_input(input_shape)
        timing = time_calls(lambda: infer(x), settings)
        return make_result(timing, settings, input_shape, self.name, self.runtime_version(), fingerprint(),
                           arch, {**self.extra(), **(extra or {})}, resolution)

    def extra(self) -> dict[str, Any]:
        return {}


def static_shape(dims: list, what: str, batch: int | None = None) -> tuple[int, ...]:
    """The model's input shape as integers; with ``batch``, a free batch dimension (a ``--dynamic-batch``
    file) takes that value."""
    if batch is not None and dims and not (isinstance(dims[0], int) and dims[0] > 0):
        dims = [batch, *dims[1:]]
    try:
        shape = tuple(int(d) for d in dims)
    except (TypeError, ValueError):
        raise MnasError(f"{what}: the model's input shape {dims} is not static; export it at a fixed shape") from None
    if not shape or any(d < 1 for d in shape):
        raise MnasError(f"{what}: the model's input shape {dims} is not static; export it at a fixed shape")
    return shape
