"""ONNX Runtime on the CPU: the default backend (one intra-op thread, sequential execution)."""

from __future__ import annotations

from typing import Any

from mnas import MnasError
from mnas.latency.local import Infer, LocalBackend, static_shape
from mnas.latency.agent.model_files import check_onnx
from mnas.latency.settings import LatencySettings


class OnnxRuntimeBackend(LocalBackend):
    name = "onnxruntime"
    model_format = "onnx"

    def runtime_version(self) -> str:
        import onnxruntime as ort
        return ort.__version__

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Infer, tuple[int, ...]]:
        import onnxruntime as ort

        check_onnx(data, self.max_tensor_bytes)
        opts = session_options(settings.threads)
        try:
            sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unparsable files
            raise MnasError(f"not an ONNX model onnxruntime can load: {str(e).splitlines()[0][:200]}") from None
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise MnasError(f"the model must have exactly one input, it has {len(inputs)}")
        name = inputs[0].name
        shape = static_shape(inputs[0].shape, "onnxruntime", settings.batch)

        def infer(x: Any) -> Any:
            return sess.run(None, {name: x})[0]

        return infer, shape


def session_options(threads: int):
    """How every onnxruntime session of mnas is set up (the backend, and the LUT's profiler, so both see the
    same optimised graph)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: an int8 model's optimisation logs a warning per dropped initializer
    # spinning threads burn a shared core between calls; with one thread there is nothing to wake
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0" if threads > 1 else "1")
    # the bytes were checked as an ONNX protobuf: never let them be read as an ORT-format flatbuffer
    opts.add_session_config_entry("session.load_model_format", "ONNX")
    return opts
