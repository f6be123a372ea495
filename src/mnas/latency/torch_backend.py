"""PyTorch eager on the CPU, in inference mode: what a researcher's notebook would time."""

from __future__ import annotations

from typing import Any

from mnas import MnasError
from mnas.latency.base import LatencyResult
from mnas.latency.local import Infer, LocalBackend
from mnas.latency.protocol import timing_model, torch_threads
from mnas.latency.settings import LatencySettings


class TorchBackend(LocalBackend):
    name = "torch"
    model_format = None  # takes no model files: loading them would mean unpickling

    def runtime_version(self) -> str:
        import torch
        return torch.__version__

    def runner(self, model, input_shape, settings: LatencySettings) -> Infer:
        import torch

        if settings.quantize != "none":
            raise MnasError(f"the torch backend times float32 eager PyTorch, not quantize: {settings.quantize}: "
                            "time int8 with the onnxruntime, litert, openvino or remote backend")
        prepared = timing_model(model, input_shape, settings)

        def infer(x: Any) -> Any:
            with torch.inference_mode():
                return prepared(torch.from_numpy(x))

        return infer

    def time_runner(self, infer, input_shape, settings, arch=None, extra=None, resolution=None) -> LatencyResult:
        with torch_threads(settings.threads):
            return super().time_runner(infer, input_shape, settings, arch, extra, resolution)

    def load(self, data: bytes, settings: LatencySettings):
        raise MnasError("the torch backend takes no model files (that would need unpickling); "
                        "use onnxruntime, openvino or litert for model files")
