"""mnas export of a searched trial (freshly initialised): every format loads in its own runtime and gives PyTorch's
outputs; the file is re-timed. Trained weights: test_export_weights.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnas.model import build
from mnas.deploy.export import export_trial
from mnas.space import Architecture
from mnas.testing import run_cli


def mnas(*args, check=True):
    return run_cli(*args, check=check)


@pytest.fixture(scope="module")
def run(tiny_search):
    return tiny_search  # read only: the exports go to tmp_path


@pytest.fixture(scope="module")
def reference(run, tmp_path_factory):
    """The pytorch export (weights only) rebuilt from its arch string: what every other format must match."""
    out = tmp_path_factory.mktemp("ref") / "best.pt"
    ranked, res = export_trial(run, 1, "pytorch", out, measure=True, runs=2)  # re-timed in torch eager
    blob = torch.load(out, map_location="cpu", weights_only=True)
    assert ranked.rank == 1 and blob["arch"] == ranked.trial.arch and blob["num_classes"] == 10 and blob["resolution"] == 32
    model = build(Architecture.parse(blob["arch"]), num_classes=blob["num_classes"]).eval()
    model.load_state_dict(blob["state_dict"])
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        y = model(torch.from_numpy(x)).numpy()
    assert res.max_abs_diff == 0 and y.shape == (1, 10)
    assert res.runtime == "torch" and res.measured.median_ms > 0 and res.measured.runs == 2
    return ranked, x, y


def _run_file(fmt, path, x):
    if fmt == "onnx":
        import onnxruntime as ort
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x.transpose(0, 2, 3, 1)))  # NHWC
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])
    with torch.inference_mode():
        return torch.jit.load(str(path)).eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow), "torchscript"])  # litert-torch: slow
def test_format_loads_in_its_runtime_and_matches_pytorch(fmt, run, reference, tmp_path):
    ranked, x, y = reference
    out = tmp_path / f"best.{fmt}"
    # re-timing is exercised for pytorch (torch eager) above and for onnx through the CLI below
    same, res = export_trial(run, 1, fmt, out, measure=False)
    assert same.trial.id == ranked.trial.id
    assert res.input_shape == ((1, 32, 32, 3) if fmt == "tflite" else (1, 3, 32, 32))  # LiteRT takes NHWC
    got = _run_file(fmt, out, x)
    assert got.shape == y.shape
    np.testing.assert_allclose(got, y, rtol=1e-3, atol=1e-3 * float(np.abs(y).max()))
    assert res.max_abs_diff <= 1e-3 * res.output_scale and res.measured is None


def test_export_cli_prints_remeasured_next_to_searched(run, tmp_path):
    out = tmp_path / "best.onnx"
    p = mnas("export", run, "--rank", "1", "--random-weights", "--format", "onnx", "--out", out, "--runs", "3")
    assert out.exists()
    assert "re-measured" in p.stdout and "vs searched" in p.stdout and "freshly initialised" in p.stdout
    assert "matches PyTorch" in p.stdout and "different runtimes" not in p.stdout
    p = mnas("export", run, "--rank", "99", "--random-weights", "--out", out, check=False)
    assert p.returncode == 2 and "out of range" in p.stderr
    p = mnas("export", run, "--format", "coreml", "--out", out, check=False)
    assert p.returncode == 2 and "unknown export format" in p.stderr


def test_export_by_trial_id_is_the_same_trial_as_its_rank(run, tmp_path):
    from mnas.store import Store
    from mnas.store.query import ranked_trials

    with Store(run, readonly=True) as store:
        second = ranked_trials(store, 2)[1]
    ranked, _ = export_trial(run, None, "onnx", tmp_path / "t.onnx", measure=False, trial_id=second.id)
    assert ranked.rank == 2 and ranked.trial.id == second.id and ranked.trial.arch == second.arch
    p = mnas("export", run, "--trial", "999", "--random-weights", "--out", tmp_path / "x.onnx", check=False)
    assert p.returncode == 2 and "no such trial" in p.stderr


def test_tflite_without_its_converter_is_one_clear_error(monkeypatch):
    import sys

    from mnas import MnasError
    from mnas.model.export import export, prepare
    from mnas.space import zoo

    monkeypatch.setitem(sys.modules, "litert_torch", None)  # what an install without mnas[litert] looks like
    shape = (1, 3, 32, 32)
    with pytest.raises(MnasError, match="needs litert-torch"):
        export(prepare(zoo.get("mnasnet-small"), shape, num_classes=10), "tflite", shape)


def test_int8_trial_export_says_its_calibration_and_what_the_search_timed(run, tmp_path):
    out = tmp_path / "best-int8.onnx"
    p = mnas("export", run, "--rank", "1", "--random-weights", "--quantize", "int8", "--out", out, "--runs", "3")
    assert "re-measured int8" in p.stdout and "float32" in p.stdout and "vs searched" in p.stdout
    assert "the search timed float32 networks, this file is int8" in p.stdout  # its search timed float32
    assert "noise" in json.loads(out.with_name("best-int8.onnx.json").read_text())["calibration"]
