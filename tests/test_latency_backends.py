"""Every backend against its real runtime: same numbers as PyTorch, a sane timing, the result contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mnas import MnasError
from mnas.latency import LatencyResult, LatencySettings, get_backend, measure
from mnas.latency.cache import LatencyCache
from mnas.latency.protocol import calibrate_bn
from mnas.model import build
from mnas.space import zoo

RES = 32
SHAPE = (1, 3, RES, RES)
FAST = LatencySettings(resolution=RES, runs=6, rounds=2, warmup=1, max_remeasures=1, num_classes=10)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    model = build(zoo.get("mnasnet-small"), num_classes=10)
    calibrate_bn(model, SHAPE)
    return model.eval()


def check_result(r: LatencyResult, backend: str, shape: tuple[int, ...] = SHAPE) -> None:
    assert r.backend == backend and r.runtime_version
    assert all(math.isfinite(x) for x in (r.median_ms, r.mean_ms, r.p10_ms, r.p90_ms, r.std_ms, r.cv))
    # a 68M-MAC net at 32 px (~1.4M MACs) takes well under a second and more than a microsecond
    assert 0.001 < r.median_ms < 1000
    assert r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.runs == 6 and r.rounds == 2 and len(r.round_medians_ms) == 2
    assert r.batch == shape[0] and r.resolution == shape[-1] and r.threads == 1 and r.input_shape == shape
    assert {"cpu", "cores", "os", "id"} <= r.device.keys()
    assert LatencyResult.from_dict(r.to_dict()) == r


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "litert"])
def test_file_backends_agree_with_pytorch_and_time_sanely(name, small_model):
    be = get_backend(name)
    infer, shape = be.load(be.export(small_model, SHAPE), FAST)
    assert shape == SHAPE
    x = np.random.default_rng(1).standard_normal(SHAPE, dtype=np.float32)
    with torch.no_grad():
        expected = small_model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(infer(x)), expected, rtol=1e-3, atol=1e-4)
    r = be.time_runner(infer, shape, FAST)
    check_result(r, name)
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
    other = LatencySettings(**{**FAST.to_dict(), "resolution": 40})
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


def test_get_backend_errors_and_registry():
    with pytest.raises(MnasError, match="unknown latency backend"):
        get_backend("nope")
    with pytest.raises(MnasError, match="agent URLs"):
        get_backend("remote:")
    from mnas.latency import BACKENDS, register_backend
    sentinel = get_backend("torch")
    register_backend("testonly", lambda arg: sentinel)
    try:
        assert get_backend("testonly:whatever") is sentinel
    finally:
        BACKENDS.pop("testonly")
