"""Post-training static int8 quantisation of an exported network: weights and activations in int8, the
activation ranges calibrated on a few inputs (real images from the training split when ``mnas export`` has
them, standard-normal noise otherwise, which is enough for timing but not for accuracy).

- ONNX: onnxruntime.quantization's ``quantize_static`` in QDQ format (QuantizeLinear/DequantizeLinear pairs
  that onnxruntime fuses into integer kernels), uint8 activations and int8 weights, per-channel weight scales
  (depthwise convolutions have channels whose ranges differ by orders of magnitude: one scale per tensor
  rounds the small ones to zero), MinMax calibration.
- TFLite: PyTorch's PT2E quantisation with litert-torch's quantizer (symmetric int8, per-channel weights),
  converted full-integer: the file's input and output tensors are int8 too, with their scale and zero point
  in the file (``mnas.latency.litert_backend`` quantises a float input with them).
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
        raise MnasError(f"unknown --quantize {quantize!r}: choose {' or '.join(QUANTIZE)} (or leave it out for float32)")
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
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {input_name: x}

    src = onnx.load_from_string(data)
    with tempfile.TemporaryDirectory(prefix="mnas-int8-") as tmp:
        fp32, int8 = os.path.join(tmp, "fp32.onnx"), os.path.join(tmp, "int8.onnx")
        with open(fp32, "wb") as f:
            f.write(data)
        quantize_static(fp32, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(int8)
    del proto.metadata_props[:]
    proto.metadata_props.extend(src.metadata_props)
    return proto.SerializeToString()


def quantize_pt2e(model, example: tuple, batches: list[np.ndarray]):
    """``model`` (taking NHWC input, as ``example``) -> (the PT2E-quantised module, its QuantConfig) for
    litert-torch's converter; calibrated on ``batches`` (NCHW, transposed here)."""
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e as pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    graph = torch.export.export(model, example).module()
    prepared = pt2e.prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in batches:
            prepared(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 3, 1))))
    return pt2e.convert_pt2e(prepared, fold_quantize=False), quant_config.QuantConfig(pt2e_quantizer=quantizer)
