"""PyTorch eager on the CPU, in inference mode: what a researcher's notebook would time."""

from __future__ import annotations

from typing import Any, Callable

from mnas import MnasError
from mnas.latency.base import LatencyResult, LatencySettings
from mnas.latency.local import LocalBackend
from mnas.latency.protocol import torch_threads


class TorchBackend(LocalBackend):
    name = "torch"
    model_format = None  # the agent takes no torch files: loading them would mean unpickling

    def runtime_version(self) -> str:
        import torch
        return torch.__version__

    def prepare(self, model, input_shape, settings: LatencySettings) -> Callable:
        import torch

        model.eval()

        def infer(x: Any) -> Any:
            with torch.inference_mode():
                return model(torch.from_numpy(x))

        return infer

    def time_runner(self, infer, input_shape, settings, arch=None, extra=None) -> LatencyResult:
        with torch_threads(settings.threads):
            return super().time_runner(infer, input_shape, settings, arch, extra)

    def load(self, data: bytes, settings: LatencySettings):
        raise MnasError("the torch backend takes no model files (that would need unpickling); "
                        "serve onnxruntime, openvino or litert instead")
