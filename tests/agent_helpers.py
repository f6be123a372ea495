"""A real device agent on an ephemeral loopback port, how to call it, and small ONNX files made to abuse it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from collections.abc import Iterator

from onnx import TensorProto, helper

from mnas.latency.agent.server import AgentServer, make_server
from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend

TOKEN = "s3cret-token-for-the-tests"
QUERY = "runs=4&rounds=2&warmup=1&max_remeasures=0"


class DiesOnRequest(OnnxRuntimeBackend):
    """onnxruntime, except that the body ``b"die"`` kills the measuring process the way the kernel's
    out-of-memory killer would (SIGKILL)."""

    def measure_file(self, data, settings):
        if data == b"die":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().measure_file(data, settings)


@contextlib.contextmanager
def running_agent(backend: str | OnnxRuntimeBackend = "onnxruntime", **options) -> Iterator[AgentServer]:
    server = make_server(backend, TOKEN, "127.0.0.1", 0, quiet=True, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def call(server, method: str, path: str, body: bytes | None = None, token: str | None = TOKEN,
         headers: dict | None = None) -> tuple[int, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=120)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def onnx_file(nodes: list, inputs: list, outputs: list, initializers: list = ()) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def external_data_model(location: str, length: int) -> bytes:
    """Adds ``length`` bytes of the file at ``location`` (relative to the loader's working directory) to
    its input: a runtime that loads it reads that file."""
    weights = TensorProto(name="W", data_type=TensorProto.UINT8, dims=[length],
                          data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        weights.external_data.add(key=key, value=value)
    return onnx_file([helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.FLOAT),
                      helper.make_node("Add", ["X", "Wf"], ["Y"])],
                     [helper.make_tensor_value_info("X", TensorProto.FLOAT, [length])],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [length])], [weights])


def big_input_model(shape: list[int]) -> bytes:
    """A ReLU on an input of ``shape``: a hundred bytes that ask the agent for the input's memory."""
    return onnx_file([helper.make_node("Relu", ["X"], ["Y"])],
                     [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)])


def tiling_model(repeats: list[int]) -> bytes:
    """A 1-element input tiled ``repeats`` times: the input is small, the declared activation is not."""
    return onnx_file([helper.make_node("Tile", ["X", "R"], ["Y"])],
                     [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1] * len(repeats))],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                     [helper.make_tensor("R", TensorProto.INT64, [len(repeats)], repeats)])


def tflite_with_external_buffer(plain: bytes, location: str, length: int) -> bytes:
    """``plain`` (a .tflite whose second tensor is a constant) with that constant's bytes moved to the file
    at ``location``: LiteRT's external buffers, the TFLite cousin of ONNX external data."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(plain), 0)
    constant = model.subgraphs[0].tensors[1]
    model.buffers[constant.buffer].data = None
    constant.buffer, constant.externalBuffer = 0, 1
    group = schema.ExternalBufferGroupT()
    group.name = location
    external = schema.ExternalBufferT()
    external.id, external.group, external.offset, external.length = 1, 0, 0, length
    model.externalBufferGroups, model.externalBuffers = [group], [external]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
