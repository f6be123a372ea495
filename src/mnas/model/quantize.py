"""Post-training static int8 quantisation of an exported network: weights and activations in int8, the
activation ranges calibrated on a few inputs (real images from the training split when ``mnas export`` has
them, standard-normal noise otherwise, which is enough for timing but not for accuracy).

- ONNX: onnxruntime.quantization's ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear pairs
  that onnxruntime fuses into integer kernels), uint8 activations and int8 weights, per-channel weight scales
  (the usual choice for depthwise convolutions, whose channels' ranges can differ by orders of magnitude),
  MinMax calibration.
- TFLite: the converted float32 file quantised by ai-edge-quantizer (``static_wi8_ai8``: int8 weights per
  channel, int8 activations, MinMax calibration), full-integer: the file's input and output tensors are int8
  too, with their scale and zero point in the file (``mnas.latency.litert_backend`` quantises a float input
  with them); the activation ranges are the global minimum and maximum over the calibration images.
  PyTorch's PT2E path through litert-torch was measured 6 points further from float32 on a trained digits
  model (docs/results/2026-12-06-int8-export.md), so it is not used.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Sequence

import numpy as np

from mnas import MnasError

QUANTIZE = ("int8",)  # --quantize choices
QUANTIZABLE_FORMATS = ("onnx", "tflite")
RANDOM_CALIBRATION = 8  # noise inputs when no images are given


def check_quantize(quantize: str | None, fmt: str) -> str | None:
    """``quantize`` lower-cased (None or "none": no quantisation), or a one-line error."""
    if quantize is None or quantize.lower() == "none":
        return None
    q = quantize.lower()
    if q not in QUANTIZE:
        raise MnasError(f"unknown --quantize {quantize!r}: choose {' or '.join(QUANTIZE)} "
                        "(or leave it out for float32)")
    if fmt not in QUANTIZABLE_FORMATS:
        raise MnasError(f"--quantize {q} writes {' or '.join(QUANTIZABLE_FORMATS)} files, not {fmt}: give "
                        "--format onnx or --format tflite, or leave --quantize out")
    return q


def calibration_batches(calibration: Iterable[np.ndarray] | None, input_shape: Sequence[int]) -> list[np.ndarray]:
    """Float32 NCHW batches of ``input_shape[0]`` images: the given ones re-chunked, or noise."""
    n = int(input_shape[0])
    if calibration is None:
        rng = np.random.default_rng(0)
        return [rng.standard_normal(tuple(input_shape), dtype=np.float32) for _ in range(RANDOM_CALIBRATION)]
    images = np.concatenate([np.asarray(x, np.float32) for x in calibration])
    out = [images[i:i + n] for i in range(0, len(images) - n + 1, n)]
    if not out:
        raise MnasError(f"int8 calibration needs at least {n} image(s), got {len(images)}")
    return out


def quantize_onnx(data: bytes, batches: list[np.ndarray], input_name: str) -> bytes:
    """The float ONNX file ``data`` statically quantised (QDQ, per-channel int8 weights, uint8 activations);
    its metadata_props are kept."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {input_name: x}

    # the sessions the quantiser opens log a warning per unused initializer they drop (hundreds a model):
    # errors only, so that a search's log stays readable. It is onnxruntime's process-wide default, left so
    # (mnas's own sessions log errors only as well: latency.onnxruntime_backend.session_options)
    ort.set_default_logger_severity(3)
    src = onnx.load_from_string(data)
    with tempfile.TemporaryDirectory(prefix="mnas-int8-") as tmp:
        fp32, int8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(fp32, "wb") as f:
            f.write(data)
        # shape inference and graph optimisation first, as onnxruntime's quantisation guide asks
        quant_pre_process(fp32, fp32)
        quantize_static(fp32, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(int8)
    del proto.metadata_props[:]
    proto.metadata_props.extend(src.metadata_props)
    return proto.SerializeToString()


def quantize_tflite(data: bytes, batches: list[np.ndarray]) -> bytes:
    """The float32 .tflite file ``data`` (NHWC input) quantised full-integer by ai-edge-quantizer's
    ``static_wi8_ai8`` recipe (int8 weights per channel, int8 activations, min/max ranges over ``batches``,
    NCHW, transposed here); the input and output tensors become int8."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils
    except ImportError:
        raise MnasError("--quantize int8 for tflite needs ai-edge-quantizer and ai-edge-litert: "
                        "pip install 'mnas[litert]'") from None
    signatures = Interpreter(model_content=data).get_signature_list()
    (name, sig), = signatures.items()
    (input_name,) = sig["inputs"]
    samples = [{input_name: np.ascontiguousarray(x[i:i + 1].transpose(0, 2, 3, 1))}
               for x in batches for i in range(len(x))]
    # the ranges are the minimum and maximum over all calibration images, as onnxruntime's MinMax takes them:
    # Quantizer.calibrate's default, a moving average (0.95) of each image's own range, clips every image
    # wider than the last few and cost 7 points of top-1 on a trained MnasNet-A1 (0.2 with the true range)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    ranges = calibrator.Calibrator(bytearray(data), num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    ranges.calibrate({name: samples}, manager)
    qt = quantizer.Quantizer(bytearray(data))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    return bytes(qt.quantize(ranges.get_model_qsvs(), enable_progress_report=False).quantized_model)
