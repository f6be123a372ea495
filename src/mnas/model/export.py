"""The one export path: prepare a network the way it is timed and shipped, then write it as an ONNX, TFLite or
TorchScript file (bytes), float32 or int8. Every latency backend, the remote client, the lookup-table builder and
``mnas export`` go through here, so what is timed is what is exported."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import sys
import threading
from typing import Iterable, Iterator

import numpy as np

import torch
from torch import nn

from mnas import MnasError
from mnas.model.builder import build
from mnas.model.quantize import calibration_batches, check_quantize, quantize_onnx, quantize_tflite
from mnas.space.arch import Architecture

log = logging.getLogger(__name__)

# Every file format a model is written in: ``export`` below writes the first three; ``pytorch`` (the state dict
# beside its architecture) is written by mnas.deploy, which holds the architecture.
FORMATS = ("onnx", "tflite", "torchscript", "pytorch")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
ONNX_OPSET = 17
# torch.onnx.export keeps global state: two exports at once (a remote pool's threads) corrupt each other;
# the other converters trace through the same machinery, so every export takes this lock
EXPORT_LOCK = threading.RLock()
_LITERT_INSTALL = "pip install 'mnas[litert]'  (litert-torch converts to .tflite)"


def check_format(fmt: str) -> str:
    """``fmt`` lower-cased, or the one error that names every format."""
    if fmt.lower() not in FORMATS:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt.lower()


def calibrate_bn(model: nn.Module, input_shape: tuple[int, ...], steps: int = 2, seed: int = 0) -> None:
    """Give BatchNorm running statistics that match N(0, 1) inputs.

    A freshly initialised network in eval mode uses mean 0 / var 1 statistics; activations then shrink
    layer by layer into denormal floats, which CPUs process many times slower, so a timing would say
    more about the initialisation than about the architecture (and exported outputs would be badly
    scaled). A few train-mode passes with a cumulative average (momentum=None) fix that; weights are
    untouched."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    was_training = model.training
    shape = (max(2, int(input_shape[0])), *input_shape[1:])  # train-mode BN needs > 1 value per channel
    gen = torch.Generator().manual_seed(seed)
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(steps):
                model(torch.randn(shape, generator=gen))
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)


def prepare(model: nn.Module | Architecture, input_shape: tuple[int, ...], num_classes: int = 1000,
            calibrate: bool = True) -> nn.Module:
    """The network as it is timed and exported, in eval mode. An architecture is built (``num_classes``
    outputs, ``input_shape[1]`` input channels); a module is copied before its BatchNorm statistics are
    calibrated, so the caller's stay untouched. ``calibrate=False`` for trained weights."""
    if isinstance(model, Architecture):
        model = build(model, num_classes=num_classes, in_chans=int(input_shape[1]))
    elif calibrate:
        model = copy.deepcopy(model)
    if calibrate:
        calibrate_bn(model, input_shape)
    return model.eval()


def export(model: nn.Module, fmt: str, input_shape: tuple[int, ...], dynamic_batch: bool = False,
           quantize: str | None = None, calibration: Iterable[np.ndarray] | None = None) -> bytes:
    """``model`` (prepared) as a file in ``fmt``: ``onnx`` (one self-contained file, input "input", output
    "logits"), ``tflite`` (NHWC input, as LiteRT runs it; needs litert-torch) or ``torchscript``. The input
    shape is fixed unless ``dynamic_batch`` (ONNX and TorchScript: the batch dimension is free). ``quantize``
    "int8": post-training static quantisation (``mnas.model.quantize``), calibrated on ``calibration``
    (float32 NCHW batches, preprocessed as for evaluation; None: noise, fine for timing only)."""
    fmt = check_format(fmt)
    quantize = check_quantize(quantize, fmt)
    if dynamic_batch and fmt == "tflite":
        raise MnasError("--dynamic-batch: a .tflite file has a fixed input shape (LiteRT resizes it at run time "
                        "with interpreter.resize_tensor_input); leave --dynamic-batch out for tflite")
    example = (torch.zeros(input_shape),)
    with EXPORT_LOCK:
        if fmt == "onnx":
            buf = io.BytesIO()
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
            # the TorchScript-based exporter (dynamo=False): fast, no onnxscript, never external data
            with torch.no_grad():
                torch.onnx.export(model, example, buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                  opset_version=ONNX_OPSET, dynamo=False, dynamic_axes=axes)
            data = buf.getvalue()
            if quantize:
                data = quantize_onnx(data, calibration_batches(calibration, input_shape), INPUT_NAME)
            return data
        if fmt == "tflite":
            return _tflite(model, example, quantize, calibration)
        if fmt == "torchscript":
            buf = io.BytesIO()
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example), buf)
            return buf.getvalue()
    raise MnasError(f"a {fmt} file holds its architecture: write it with mnas.deploy.export.write_model")


def _tflite(model: nn.Module, example: tuple[torch.Tensor, ...], quantize: str | None = None,
            calibration: Iterable[np.ndarray] | None = None) -> bytes:
    try:
        import litert_torch
    except ImportError:
        raise MnasError(f"exporting .tflite needs litert-torch: {_LITERT_INSTALL}") from None
    log.debug("converting to .tflite (litert-torch)")
    nchw = tuple(example[0].shape)
    if len(nchw) == 4:  # an image: NHWC in, as a phone's camera pipeline and TFLite model zoos feed it
        model = litert_torch.to_channel_last_io(model, args=[0]).eval()
        example = (torch.zeros(nchw[0], *nchw[2:], nchw[1]),)
    elif quantize:
        raise MnasError(f"int8 .tflite export takes an image input (N, C, H, W), not {nchw}")
    with _quiet():
        data = bytes(litert_torch.convert(model, example).model_content())
        if quantize:
            data = quantize_tflite(data, calibration_batches(calibration, nchw))
    return data


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The TFLite converter reports progress on the process's stdout/stderr (file descriptors, not
    sys.stdout); a measurement or an export should print only its result, so both go to /dev/null."""
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
