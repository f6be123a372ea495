"""OpenVINO on the CPU with f32 precision set explicitly.

Without INFERENCE_PRECISION_HINT=f32 OpenVINO silently runs bf16 on CPUs with AMX/AVX-512-BF16, which
would time a different (lower-precision) network than the other backends."""

from __future__ import annotations

from typing import Any

from mnas import MnasError
from mnas.latency.local import Infer, LocalBackend, static_shape
from mnas.latency.agent.model_files import check_onnx
from mnas.latency.settings import LatencySettings

_INSTALL = "pip install 'mnas[latency]'  (OpenVINO)"


def _openvino() -> Any:
    """The openvino module, or one line naming the extra that installs it."""
    try:
        import openvino
    except ImportError:
        raise MnasError(f"the openvino backend needs OpenVINO, which is not installed: {_INSTALL}") from None
    return openvino


class OpenVinoBackend(LocalBackend):
    name = "openvino"
    model_format = "onnx"

    def __init__(self, arg: str = "") -> None:
        super().__init__(arg)
        self._precision = ""

    def runtime_version(self) -> str:
        return _openvino().get_version()

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Infer, tuple[int, ...]]:
        ov = _openvino()

        check_onnx(data, self.max_tensor_bytes)
        core = ov.Core()
        try:
            # ONNX from memory: the frontend reads a bytes object when no weights blob is given
            model = core.read_model(model=data, weights=ov.Tensor(type=ov.Type.u8, shape=[0]))
        except Exception:
            try:
                import io
                model = ov.convert_model(io.BytesIO(data))
            except Exception as e:
                raise MnasError(f"not an ONNX model OpenVINO can load: {str(e).splitlines()[0][:200]}") from None
        if len(model.inputs) != 1:
            raise MnasError(f"the model must have exactly one input, it has {len(model.inputs)}")
        pshape = model.inputs[0].get_partial_shape()
        if pshape.is_dynamic:
            raise MnasError("openvino: the model's input shape is not static; export it at a fixed shape")
        shape = static_shape(list(pshape.to_shape()), "openvino")
        compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": settings.threads,
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
        self._precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        request = compiled.create_infer_request()

        def infer(x: Any) -> Any:
            request.infer({0: x})
            return request.get_output_tensor(0).data

        return infer, shape

    def extra(self) -> dict[str, Any]:
        return {"inference_precision": self._precision}
