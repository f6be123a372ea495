"""The GPU path on a real CUDA device: a proxy trial, trials sharing one GPU, a full training with checkpoint
and resume, mixed-precision numerics, and the export of a GPU-trained model scored on onnxruntime's CPU.

Skipped (with the reason) where torch sees no CUDA device; benchmarks/gpu_check.py runs them on a GPU machine.
Everything here trains on small built-in datasets (digits) so each test takes seconds on a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from mnas.data import load_dataset
from mnas.latency import LatencySettings
from mnas.run import LatencyJob, TrialJob, run_trial
from mnas.space import Architecture
from mnas.train import TrainConfig, TrainTask, train_proxy
from mnas.train import checkpoint as ckpt
from mnas.train.full import train_full

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA device (torch.cuda.is_available() is false)")]

TINY = Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32")
CHANCE = 0.1  # digits: 10 classes


def gpu_cfg(**kw) -> TrainConfig:
    """Digits at 16 px on the GPU with the defaults a user gets there (amp auto, channels-last)."""
    base = dict(resolution=16, batch_size=64, width_multiplier=1.0, holdout=0.2, device="cuda", epochs=5, lr=0.2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 16, 0.2, 0)


def test_a_proxy_trial_trains_on_the_gpu_with_the_fast_defaults():
    proxy = TrainTask(dataset="digits", resolution=32, width_multiplier=1.0, epochs=3, batch_size=32, lr=0.05,
                      device="auto")
    latency = LatencyJob("onnxruntime", LatencySettings(resolution=32, runs=5, warmup=1, num_classes=10))
    trial = run_trial(TrialJob(1, TINY.canonical, latency, proxy, 0))
    assert trial.status == "completed", trial.error
    t = trial.train
    assert t["device"].startswith("cuda") and t["amp"] in ("bf16", "fp16") and t["channels_last"]
    assert t["batch_size"] == 32 and not t["compile"]
    assert trial.accuracy > 2 * CHANCE and trial.latency_ms > 0
    assert all(math.isfinite(x) for x in t["loss_curve"]) and t["loss_curve"][-1] < t["loss_curve"][0]


def test_two_local_workers_share_the_gpu(tmp_path):
    from mnas.search.config import config_from_dict
    from mnas.search.driver import Search
    from mnas.testing import tiny

    # no live view: the GPU machine's image has no optuna (the search would go on without it, with a warning)
    cfg = config_from_dict(tiny(trials=4, executor={"kind": "local", "workers": 2}, live_view=False,
                                **{"proxy.device": "cuda", "proxy.epochs": 3}))
    with Search.open(cfg, tmp_path / "run") as exp:
        state = exp.run()
        trials = exp.store.trials()
    assert state.completed == 4, [t.error for t in trials]
    assert {t.train["device"] for t in trials} == {"cuda"} and len({t.worker.split()[0] for t in trials}) == 2


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_learns_like_float32(digits, amp):
    """No NaN, the loss falls, and top-1 ends within 6 points of the float32 run with the same seed."""
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    full = train_proxy(TINY, digits, gpu_cfg(amp="off"))
    mixed = train_proxy(TINY, digits, gpu_cfg(amp=amp))
    assert full.ok and mixed.ok, (full.error, mixed.error)
    assert (full.amp, mixed.amp) == ("off", amp)
    for r in (full, mixed):
        assert all(math.isfinite(x) for x in r.loss_curve) and math.isfinite(r.val_loss)
        assert r.loss_curve[-1] < 0.7 * r.loss_curve[0]
    assert full.top1 > 0.5
    assert abs(mixed.top1 - full.top1) <= 0.06, (mixed.top1, full.top1)


def test_full_training_checkpoints_and_resumes_on_the_gpu(tmp_path, digits):
    """Stopped during its second epoch, the run resumes after epoch 1 from last.pt (model, EMA, optimizer,
    grad scaler, random states) and ends near an uninterrupted run (GPU kernels are not bit-reproducible)."""
    cfg = gpu_cfg(epochs=3, amp="fp16")  # fp16: the grad scaler's state goes through the checkpoint too
    straight = train_full(TINY, digits, cfg, tmp_path / "straight")
    assert straight.ok and straight.epochs == 3, straight.error

    class Stop(Exception):
        pass

    def stop_in_epoch_2(step: int, total: int, loss: float) -> None:
        if step > total // 3 + 2:
            raise Stop

    with pytest.raises(Stop):
        train_full(TINY, digits, cfg, tmp_path / "killed", progress=stop_in_epoch_2)
    blob = ckpt.read(tmp_path / "killed", ckpt.LAST)
    assert blob["epoch"] == 1 and blob["scaler"] is not None
    assert all(v.device.type == "cpu" for v in blob["model"].values())  # readable without a GPU
    resumed = train_full(TINY, digits, cfg, tmp_path / "killed", resume=True)
    assert resumed.ok and resumed.resumed_from == 1 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert abs(resumed.top1 - straight.top1) <= 0.05, (resumed.top1, straight.top1)
    # the checkpoint alone rebuilds the model on the CPU, and it scores what the GPU run reported
    model = ckpt.load_model(ckpt.read(tmp_path / "killed", ckpt.LAST))
    meta = ckpt.info(blob)
    x = digits.x_val.float().div(255).sub(meta.mean[0]).div(meta.std[0])
    with torch.inference_mode():
        top1 = float((model(x).argmax(1) == digits.y_val).float().mean())
    assert abs(top1 - resumed.top1) <= 0.02, (top1, resumed.top1)


def test_a_gpu_trained_model_scores_the_same_on_onnxruntime_cpu(tmp_path, digits):
    pytest.importorskip("onnxruntime")
    from mnas.deploy.export import export_checkpoint

    r = train_full(TINY, digits, gpu_cfg(), tmp_path / "run", name="tiny")
    assert r.ok and r.best_top1 > 0.5, r.error
    d = export_checkpoint(tmp_path / "run", "onnx", tmp_path / "m.onnx", measure=False, verify=True).to_dict()
    p = d["parity"]
    assert p["runtime"] == "onnxruntime" and p["images"] == p["images_total"] == len(digits.y_val)
    assert abs(p["diff_points"]) <= p["max_diff_points"], p
    assert abs(p["pytorch_top1"] - r.best_top1) <= 0.03, (p, r.best_top1)  # CPU float32 vs the GPU's bf16 eval


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_a_supernet_trains_on_the_gpu_in_mixed_precision_and_reads_candidates(tmp_path, amp):
    """The supernet's CUDA path: sandwich steps under autocast (fp16 with its scaler kept in the checkpoint),
    each chunk recording its precision, then candidates read on the GPU above chance."""
    from mnas.space import load_space
    from mnas.supernet.evaluate import SupernetEvaluator
    from mnas.supernet.training import read_checkpoint, train_supernet

    task = TrainTask(dataset="digits", resolution=16, width_multiplier=0.5, batch_size=64, holdout=0.2,
                     device="cuda", amp=amp)
    r = train_supernet(load_space("mnasnet-cifar-elastic"), task, tmp_path / "sn", 300, 150, kernel_transform=False)
    assert r.status == "ok", r.error
    blob = read_checkpoint(tmp_path / "sn")
    assert [h["amp"] for h in blob["history"]] == [amp, amp]
    assert (blob["scaler"] is not None) == (amp == "fp16")
    ev = SupernetEvaluator(tmp_path / "sn", "cuda")
    net = ev.net
    for arch in (net.pick("largest"), net.pick("smallest")):
        assert ev.evaluate(arch)["top1"] > 3 * CHANCE
