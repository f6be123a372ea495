"""Export to ONNX as one self-contained file."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn


def to_onnx_bytes(model: nn.Module, resolution: int = 224, batch: int = 1, in_chans: int = 3,
                  opset: int = 17) -> bytes:
    """The TorchScript-based exporter (dynamo=False): fast, no onnxscript, never external data."""
    model = model.eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(batch, in_chans, resolution, resolution),), buf,
                          input_names=["input"], output_names=["logits"], opset_version=opset,
                          dynamo=False)
    return buf.getvalue()


def to_onnx(model: nn.Module, path: str | Path, **kwargs) -> Path:
    path = Path(path)
    path.write_bytes(to_onnx_bytes(model, **kwargs))
    return path
