"""LiteRT (TensorFlow Lite), the mobile runtime the paper timed on: models converted by
``mnas.model.export`` (litert-torch), run by ai-edge-litert's interpreter (XNNPACK delegate, the default CPU
path on phones). Conversion takes 10-20 s per model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mnas import MnasError
from mnas.latency.local import Infer, LocalBackend, static_shape
from mnas.latency.agent.model_files import check_tflite, check_tflite_tensors
from mnas.latency.settings import LatencySettings

_INSTALL = "pip install 'mnas[litert]'  (litert-torch to convert, ai-edge-litert to run)"


class LiteRtBackend(LocalBackend):
    name = "litert"
    model_format = "tflite"
    input_layout = "NHWC"

    def runtime_version(self) -> str:
        try:
            return version("ai-edge-litert")
        except PackageNotFoundError:
            return ""

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        # models are converted with NHWC input now (no transpose in front): results timed on the NCHW
        # files converted before are not reused
        return {**super().identity(settings), "input_layout": self.input_layout}

    def runner(self, model, input_shape: tuple[int, ...], settings: LatencySettings) -> Infer:
        """The network's runner for NCHW input, as every caller of ``runner`` feeds it (a search's side-by-side
        rounds, a table build): each array is transposed to the file's NHWC once, so the time is the model's."""
        infer = super().runner(model, input_shape, settings)
        if len(input_shape) != 4:
            return infer
        last: list = [None, None]

        def nchw(x: Any) -> Any:
            if last[0] is not x:
                last[:] = [x, x.transpose(0, 2, 3, 1).copy()]
            return infer(last[1])

        return nchw

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Infer, tuple[int, ...]]:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MnasError(f"the litert backend needs ai-edge-litert: {_INSTALL}") from None
        # the flatbuffer identifier "TFL3" sits at bytes 4..8; refuse anything else before the C++ parser sees it
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise MnasError("not a TFLite model (no TFL3 flatbuffer identifier)")
        check_tflite(data)
        try:
            interp = Interpreter(model_content=data, num_threads=settings.threads)
            if self.max_tensor_bytes is not None:  # before the tensors are allocated
                check_tflite_tensors(interp.get_tensor_details(), self.max_tensor_bytes)
            interp.allocate_tensors()
        except MnasError:
            raise
        except Exception as e:
            raise MnasError(f"not a TFLite model LiteRT can load: {str(e).splitlines()[0][:200]}") from None
        inputs = interp.get_input_details()
        if len(inputs) != 1:
            raise MnasError(f"the model must have exactly one input, it has {len(inputs)}")
        index, in_dtype = inputs[0]["index"], inputs[0]["dtype"]
        shape = static_shape(list(inputs[0]["shape"]), "litert")
        output = interp.get_output_details()[0]
        out_index = output["index"]
        # a full-integer (int8) file takes and gives integers: a float input is quantised with the file's own
        # scale and zero point, the output dequantised, so callers feed and read floats either way
        q_in = _quantisation(inputs[0])
        q_out = _quantisation(output)
        last: list = [None, None]  # the timing loop feeds one array again and again: quantise it once

        def infer(x: Any) -> Any:
            if q_in is not None and x.dtype != in_dtype:
                if last[0] is not x:
                    last[:] = [x, _quantise(x, *q_in, in_dtype)]
                x = last[1]
            interp.set_tensor(index, x)
            interp.invoke()
            y = interp.get_tensor(out_index)
            return y if q_out is None else (y.astype("float32") - q_out[1]) * q_out[0]

        return infer, shape


def _quantisation(detail: dict) -> tuple[float, int] | None:
    """(scale, zero point) of an integer tensor, None for a float one."""
    import numpy as np

    if np.issubdtype(detail["dtype"], np.floating):
        return None
    scale, zero = detail.get("quantization") or (0.0, 0)
    return (float(scale), int(zero)) if scale else None


def _quantise(x: Any, scale: float, zero: int, dtype: Any) -> Any:
    import numpy as np

    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float32) / scale) + zero, info.min, info.max).astype(dtype)
