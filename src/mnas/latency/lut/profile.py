"""Where a table's error comes from: each entry beside the same layer's share of a whole-network profile.

onnxruntime's profiler (``SessionOptions.enable_profiling``) times every node of the optimized graph. Node
names keep the exported module path (``/blocks/blocks.3/ops/...``), so each node is charged to the layer it
came from; nodes the optimizer adds between layers (layout reorders) carry no module path and are
reported as ``unattributed``. Isolated layers that are systematically faster or slower than inside a
network show up here layer by layer, instead of as one bias on the whole sum.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnas import MnasError
from mnas.latency.local import random_input
from mnas.latency.onnxruntime_backend import session_options
from mnas.latency.protocol import model_file

if TYPE_CHECKING:
    from mnas.latency.lut.table import LatencyTable
    from mnas.space.arch import Architecture

log = logging.getLogger(__name__)

_LAYER = re.compile(r"^/blocks/blocks\.(\d+)/")
_HEAD = ("/head/", "/pool/", "/flatten", "/classifier/", "/dropout/")


def owner(node: str, n_layers: int) -> int | None:
    """Index into ``arch_layers`` (0: stem, 1..n: the block layers, n+1: head) of the layer a profiled node
    belongs to; None for nodes the optimizer inserted."""
    if node.startswith("/stem/"):
        return 0
    m = _LAYER.match(node)
    if m:
        return int(m.group(1)) + 1
    if node.lower().startswith(_HEAD):
        return n_layers + 1
    return None


def node_times(data: bytes, shape: tuple[int, ...], threads: int, warmup: int, runs: int) -> tuple[dict, float]:
    """Mean ms per node name over ``runs`` profiled calls after ``warmup``, and the mean ms per call."""
    import onnxruntime as ort

    opts = session_options(threads)  # as the backend sets them, so the graph is optimized alike
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = random_input(shape)
        for _ in range(warmup + runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    calls = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[warmup:]
    if len(calls) != runs:
        raise MnasError(f"onnxruntime's profile holds {len(calls) + warmup} calls, expected {warmup + runs}")
    start = calls[0]["ts"]
    per_node: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            per_node[e["name"][: -len("_kernel_time")]] += e["dur"] / 1e3 / runs
    return dict(per_node), sum(c["dur"] for c in calls) / 1e3 / runs


def profile_arch(table: LatencyTable, arch: Architecture, runs: int = 20, warmup: int = 5) -> dict[str, Any]:
    """Per layer of ``arch``: the table's entry and the layer's profiled time inside the whole network."""
    if table.backend != "onnxruntime":
        raise MnasError(f"profiling needs an onnxruntime table, this one was built on {table.backend!r}")
    s = table.settings
    layers = table.layers(arch)
    lacking = table.missing(arch)
    if lacking:
        raise MnasError(f"the table lacks {len(lacking)} of this architecture's layers: finish it with "
                        "'mnas lut build'")
    data = model_file(arch, "onnx", s.input_shape(), s)
    per_node, call_ms = node_times(data, s.input_shape(), s.threads, warmup, runs)
    in_net = [0.0] * len(layers)
    unattributed = 0.0
    for node, ms in per_node.items():
        i = owner(node, len(layers) - 2)
        if i is None or i >= len(layers):
            unattributed += ms
        else:
            in_net[i] += ms
    rows = [{"layer": spec.key, "entry_ms": round(table.entries[spec.key]["ms"], 4), "in_network_ms": round(ms, 4),
             "ratio": round(ms / table.entries[spec.key]["ms"], 3) if table.entries[spec.key]["ms"] else None}
            for spec, ms in zip(layers, in_net)]
    return {"arch": arch.canonical, "layers": rows, "unattributed_ms": round(unattributed, 4),
            "overhead_ms": table.overhead_ms, "sum_entries_ms": round(sum(r["entry_ms"] for r in rows), 4),
            "sum_nodes_ms": round(sum(in_net) + unattributed, 4), "call_ms": round(call_ms, 4)}
