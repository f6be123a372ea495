"""ONNX export of any architecture into one file, numerically equal to PyTorch in onnxruntime."""

import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mnas.model import build
from mnas.model.export import export
from mnas.space import MnasNetSpace, zoo


@pytest.mark.parametrize("arch", [zoo.get("mnasnet-a1"), zoo.get("mnasnet-small"),
                                  MnasNetSpace.load().sample(random.Random(7))], ids=["a1", "small", "sampled"])
def test_onnx_matches_pytorch(tmp_path, arch):
    torch.manual_seed(0)
    model = build(arch, num_classes=10).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(export(model, "onnx", (1, 3, 64, 64)))
    onnx.checker.check_model(str(path))  # the bytes alone are the model: no external data file beside it
    x = torch.randn(1, 3, 64, 64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
