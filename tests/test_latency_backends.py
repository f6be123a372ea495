"""Every backend against its real runtime: same numbers as PyTorch, a sane timing, the result contract."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnas import MnasError
from mnas.latency import LatencyCache, LatencyResult, LatencySettings, get_backend, measure, register_backend
from mnas.model import build
from mnas.model.export import calibrate_bn, export, prepare
from mnas.space import zoo
from mnas.testing import install_plugin, plugins_on_path, run_cli

RES = 32
SHAPE = (1, 3, RES, RES)
FAST = LatencySettings(resolution=RES, runs=6, rounds=2, warmup=1, max_remeasures=1, num_classes=10)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    model = build(zoo.get("mnasnet-small"), num_classes=10)
    calibrate_bn(model, SHAPE)
    return model.eval()


def check_result(r: LatencyResult, backend: str, shape: tuple[int, ...] = SHAPE, nhwc: bool = False) -> None:
    assert r.backend == backend and r.runtime_version
    assert all(math.isfinite(x) for x in (r.median_ms, r.mean_ms, r.p10_ms, r.p90_ms, r.std_ms, r.cv))
    # a 68M-MAC net at 32 px (~1.4M MACs) takes well under a second and more than a microsecond
    assert 0.001 < r.median_ms < 1000
    assert r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.runs == 6 and r.rounds == 2 and len(r.round_medians_ms) == 2
    assert r.batch == shape[0] and r.resolution == shape[2 if nhwc else -1] and r.threads == 1 and r.input_shape == shape
    assert {"cpu", "cores", "os", "id"} <= r.device.keys()
    assert LatencyResult.from_dict(r.to_dict()) == r


# litert: the .tflite converter (litert-torch) takes several seconds a model
@pytest.mark.parametrize("name", ["onnxruntime", "openvino", pytest.param("litert", marks=pytest.mark.slow)])
def test_file_backends_agree_with_pytorch_and_time_sanely(name, small_model):
    be = get_backend(name)
    data = export(small_model, be.model_format, SHAPE)
    infer, shape = be.load(data, FAST)
    nhwc = name == "litert"  # a .tflite file takes NHWC, as LiteRT runs it
    assert shape == ((SHAPE[0], *SHAPE[2:], SHAPE[1]) if nhwc else SHAPE)
    x = np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)
    with torch.no_grad():
        expected = small_model(torch.from_numpy(x)).numpy()
    got = infer(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if nhwc else x)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-3, atol=1e-4)
    r = be.measure_file(data, FAST)
    check_result(r, name, shape, nhwc)
    if name == "openvino":  # bf16 would be a different network; f32 must really be in force
        assert "f32" in r.extra["inference_precision"] or "float32" in r.extra["inference_precision"]


def test_torch_backend_measures_a_module_without_touching_it(small_model):
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    r = get_backend("torch").measure_model(small_model, SHAPE, FAST)
    check_result(r, "torch")
    assert all(torch.equal(before[k], v) for k, v in small_model.state_dict().items())
    assert torch.get_num_threads() >= 1


def test_measure_arch_with_cache(tmp_path):
    arch = zoo.get("mnasnet-small")
    cache = LatencyCache(tmp_path)
    first = measure(arch, "onnxruntime", FAST, cache)
    assert not first.cached and first.arch == arch.canonical and len(cache) == 1
    second = measure(arch, "onnxruntime", FAST, cache)
    assert second.cached and second.median_ms == first.median_ms
    other = FAST.replace(resolution=40)
    assert not measure(arch, "onnxruntime", other, tmp_path / "latency.sqlite").cached
    assert len(LatencyCache(tmp_path)) == 2


def test_batch_and_non_square_inputs_on_onnxruntime():
    layer = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.BatchNorm2d(16))
    r = get_backend("onnxruntime").measure_model(layer, (2, 16, 12, 20), FAST)
    assert r.input_shape == (2, 16, 12, 20) and r.batch == 2 and r.median_ms > 0


def test_bn_calibration_moves_statistics_off_the_defaults():
    model = build(zoo.get("mnasnet-small"), num_classes=10)
    calibrate_bn(model, SHAPE)
    bn = model.stem[1]
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))
    assert bn.momentum == pytest.approx(0.01) and model.training  # settings restored


def test_prepare_calibrates_a_copy_and_builds_architectures():
    model = build(zoo.get("mnasnet-small"), num_classes=10)
    prepared = prepare(model, SHAPE)
    assert prepared is not model and not prepared.training and model.training
    assert torch.equal(model.stem[1].running_var, torch.ones_like(model.stem[1].running_var))
    built = prepare(zoo.get("mnasnet-small"), (1, 1, RES, RES), num_classes=7)
    assert built(torch.zeros(1, 1, RES, RES)).shape == (1, 7)
    with pytest.raises(MnasError, match="unknown export format"):
        export(prepared, "coreml", SHAPE)


def test_capabilities_are_on_the_protocol(small_model):
    assert get_backend("onnxruntime").model_format == "onnx" and get_backend("tflite").model_format == "tflite"
    torch_be = get_backend("torch")
    assert torch_be.model_format is None
    with pytest.raises(MnasError, match="takes no model files"):
        torch_be.measure_file(export(small_model, "onnx", SHAPE), FAST)
    with pytest.raises(MnasError, match="takes no argument"):
        get_backend("onnxruntime:gpu")


def test_get_backend_errors_and_registry():
    with pytest.raises(MnasError, match="unknown latency backend 'nope'"):
        get_backend("nope")
    with pytest.raises(MnasError, match="agent URLs"):
        get_backend("remote:")
    sentinel = get_backend("torch")
    seen = []
    register_backend("testonly", lambda arg, **options: seen.append((arg, options)) or sentinel)
    assert get_backend("testonly:whatever", colour="red") is sentinel
    assert seen == [("whatever", {"colour": "red"})]
    register_backend("testonly-lazy", "mnas.latency.torch_backend:TorchBackend")  # imported on first use
    assert get_backend("testonly-lazy").name == "torch"


def test_latency_modules_import_no_backend_and_the_client_no_server():
    """The registry names backends without importing them, and the remote client shares only the wire
    module with the agent: importing the package (or the client) loads neither a runtime nor the server."""
    code = ("import sys, mnas.latency, mnas.latency.agent.remote; "
            "print(' '.join(m for m in sys.modules if m.startswith(('mnas.latency.', 'torch', 'onnxruntime'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                 .stdout.split())
    assert "mnas.latency.agent.wire" in loaded and "mnas.latency.agent.remote" in loaded
    assert not {m for m in loaded if m.endswith("_backend") or m in ("mnas.latency.agent.server", "mnas.latency.local",
                                                                       "torch", "onnxruntime")}


TOY_BACKEND = """
from mnas.latency import LatencyResult, LatencySettings

class ToyBackend:
    name = "toy"
    model_format = None

    def __init__(self, arg=""):
        self.arg = arg

    def identity(self, settings):
        return {"backend": "toy", "runtime_version": "0", "device": "toybox"}

    def measure(self, arch, settings=None):
        s = settings or LatencySettings()
        return LatencyResult(median_ms=12.345, mean_ms=12.345, p10_ms=12.345, p90_ms=12.345, std_ms=0.0, cv=0.0,
                             runs=s.runs, warmup=s.warmup, batch=s.batch, resolution=s.resolution,
                             threads=s.threads, backend="toy", runtime_version="0", device={"id": "toybox"},
                             time="2000-01-01T00:00:00Z", arch=arch.canonical, extra={"arg": self.arg})

    def measure_model(self, model, input_shape, settings=None):
        raise NotImplementedError

    def measure_file(self, data, settings):
        raise NotImplementedError
"""


def test_a_plugin_backend_registers_by_entry_point_and_runs_in_the_cli(tmp_path):
    """A package that mnas knows nothing about: one module and its dist-info on the path."""
    root = install_plugin(tmp_path / "site", "toy_backend", TOY_BACKEND,
                          {"mnas.backends": {"toy": "toy_backend:ToyBackend"}})
    with plugins_on_path(root):
        p = run_cli("latency", "mnasnet-a1", "--backend", "toy:knob", "--json", "--cache", tmp_path / "cache")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["median_ms"] == 12.345 and out["backend"] == "toy" and out["extra"] == {"arg": "knob"}
    assert out["arch"] == zoo.get("mnasnet-a1").canonical and not out["cached"]


def test_litert_runner_takes_nchw_and_feeds_the_file_nhwc(monkeypatch):
    """Every caller of ``runner`` (measure, a search's side-by-side rounds, a table build) feeds NCHW; a .tflite
    file takes NHWC. The array is transposed once, not on every timed call."""
    from mnas.latency.litert_backend import LiteRtBackend
    from mnas.latency.local import LocalBackend

    fed = []
    monkeypatch.setattr(LocalBackend, "runner", lambda self, model, shape, settings: lambda x: fed.append(x) or x)
    run = LiteRtBackend().runner(None, (1, 3, 8, 6), FAST)
    x = np.arange(144, dtype=np.float32).reshape(1, 3, 8, 6)
    run(x)
    run(x)
    assert [a.shape for a in fed] == [(1, 8, 6, 3)] * 2 and fed[0] is fed[1]
    np.testing.assert_array_equal(fed[0], x.transpose(0, 2, 3, 1))
