"""LiteRT (TensorFlow Lite), the mobile runtime the paper timed on: convert with litert-torch, run with
ai-edge-litert's interpreter (XNNPACK delegate, the default CPU path on phones)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any, Callable

from mnas import MnasError
from mnas.latency.base import LatencySettings
from mnas.latency.local import LocalBackend, static_shape

_INSTALL = "pip install 'mnas[litert]'  (litert-torch to convert, ai-edge-litert to run)"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


@contextlib.contextmanager
def _quiet():
    """The converter reports progress on the process's stdout/stderr (file descriptors, not sys.stdout);
    a measurement should print only its result, so both are sent to /dev/null while it runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


class LiteRtBackend(LocalBackend):
    name = "litert"
    model_format = "tflite"

    def runtime_version(self) -> str:
        return _version("ai-edge-litert")

    def export(self, model, input_shape: tuple[int, ...]) -> bytes:
        """PyTorch -> .tflite bytes (float32, NCHW input kept as in PyTorch)."""
        try:
            import litert_torch
        except ImportError:
            raise MnasError(f"the litert backend needs litert-torch: {_INSTALL}") from None
        import torch

        from mnas.latency.local import EXPORT_LOCK

        with EXPORT_LOCK, _quiet():
            edge = litert_torch.convert(model.eval(), (torch.zeros(input_shape),))
            return bytes(edge.model_content())

    def load(self, data: bytes, settings: LatencySettings) -> tuple[Callable, tuple[int, ...]]:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise MnasError(f"the litert backend needs ai-edge-litert: {_INSTALL}") from None
        # the flatbuffer identifier "TFL3" sits at bytes 4..8; refuse anything else before the C++ parser sees it
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise MnasError("not a TFLite model (no TFL3 flatbuffer identifier)")
        try:
            interp = Interpreter(model_content=data, num_threads=settings.threads)
            interp.allocate_tensors()
        except Exception as e:
            raise MnasError(f"not a TFLite model LiteRT can load: {str(e).splitlines()[0][:200]}") from None
        inputs = interp.get_input_details()
        if len(inputs) != 1:
            raise MnasError(f"the model must have exactly one input, it has {len(inputs)}")
        index = inputs[0]["index"]
        shape = static_shape(list(inputs[0]["shape"]), "litert")
        out_index = interp.get_output_details()[0]["index"]

        def infer(x: Any) -> Any:
            interp.set_tensor(index, x)
            interp.invoke()
            return interp.get_tensor(out_index)

        return infer, shape
