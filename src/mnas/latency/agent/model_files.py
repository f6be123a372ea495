"""Checks on a model file before a runtime loads it. The device agent loads files sent over the network: an
ONNX file may name other files as its weights ("external data", which the runtime would read from the
agent's disk, relative to its working directory), so may a TFLite file (LiteRT's external buffers), and
any model may declare tensors far larger than the machine's memory. All are refused here, with one
MnasError line, before the runtime sees the file."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from mnas import MnasError

UNKNOWN_ITEMSIZE = 8  # element types numpy has no size for (strings, ...): assume the widest number


def check_onnx(data: bytes, max_tensor_bytes: int | None = None) -> None:
    """Refuse external data anywhere in the model (graphs nested in attributes and functions included) and,
    with ``max_tensor_bytes``, any input, output or intermediate tensor that ONNX shape inference finds to
    be larger."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        raise MnasError("not an ONNX model (the file does not parse as an ONNX protobuf)") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) for t in _tensors(model)):
        raise MnasError("the ONNX model refers to external data files; only self-contained models are "
                        "accepted (export without external data)")
    if max_tensor_bytes is None:
        return
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # onnx raises its own error types for inconsistent graphs
        raise MnasError(f"the ONNX model's shapes cannot be inferred: {str(e).splitlines()[0][:200]}") from None
    graph = inferred.graph
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if None not in dims:
            check_tensor(info.name, dims, _itemsize(tensor.elem_type), max_tensor_bytes)


def check_tensor(name: str, shape: list[int], itemsize: int, max_tensor_bytes: int) -> None:
    size = math.prod(shape) * itemsize
    if size > max_tensor_bytes:
        raise MnasError(f"tensor {name[:60]!r} of shape {'x'.join(map(str, shape))} takes {_size(size)}, over "
                        f"the limit of {_size(max_tensor_bytes)} per tensor")


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _tensors(message: Any) -> Iterator[Any]:
    """Every TensorProto inside ``message``, however deeply nested, found through protobuf reflection so no
    place a tensor can hide (initializers, attributes, subgraphs, functions, sparse tensors) is missed."""
    from google.protobuf.message import Message
    from onnx import TensorProto

    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for item in [value] if isinstance(value, Message) else value:
            if isinstance(item, TensorProto):
                yield item
            yield from _tensors(item)


def _itemsize(elem_type: int) -> int:
    import numpy as np
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return UNKNOWN_ITEMSIZE


def check_tflite(data: bytes) -> None:
    """Refuse a TFLite model that names external buffer files, read with the flatbuffer schema LiteRT ships."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        external = model.ExternalBufferGroupsLength() or model.ExternalBuffersLength()
    except Exception:  # flatbuffers reads lazily: a damaged offset surfaces as struct or index errors
        raise MnasError("not a TFLite model (the flatbuffer does not parse)") from None
    if external:
        raise MnasError("the TFLite model refers to external buffer files; only self-contained models are "
                        "accepted")


def check_tflite_tensors(details: list[dict[str, Any]], max_tensor_bytes: int) -> None:
    """The LiteRT interpreter's ``get_tensor_details()``, read before ``allocate_tensors``: refuse any tensor
    larger than ``max_tensor_bytes``."""
    import numpy as np

    for t in details:
        shape = [int(d) for d in t["shape"]]
        if all(d >= 0 for d in shape):
            check_tensor(t["name"], shape, np.dtype(t["dtype"]).itemsize, max_tensor_bytes)
