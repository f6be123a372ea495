"""mnas export of trained weights: a checkpoint alone or with a searched trial, the file's validation top-1 in
its own runtime equal to PyTorch's, the metadata an application reads, and the one-line refusals (random
weights not asked for, a checkpoint of another architecture or label set, a dataset that is gone)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from mnas.space import Architecture
from mnas.train import TrainTask, load_proxy_data
from mnas.train import checkpoint as ckpt
from mnas.train.full import train_full
from mnas.testing import run_cli

TINY = Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32")
HAS_LITERT = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert"))


def mnas(*args, check=True):
    return run_cli(*args, check=check)


def train(arch, out, **kw):
    """A checkpoint folder: ``arch`` at full width on digits at 16 px, one thread."""
    cfg = TrainTask(**{"dataset": "digits", "resolution": 16, "width_multiplier": 1.0, "batch_size": 64,
                         "threads": 1, "device": "cpu", **kw})
    r = train_full(arch, load_proxy_data(cfg, cfg.seed), cfg, out, name="tiny")
    assert r.ok, r.error
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    # 5 epochs at lr 0.2 take this net to ~85% on digits in a few seconds (chance: 10%)
    return train(TINY, tmp_path_factory.mktemp("ckpt") / "tiny", epochs=5, lr=0.2)


@pytest.fixture(scope="module")
def run(tiny_search):
    return tiny_search  # read only: the exports go to tmp_path


def best_trial(run):
    """(id, architecture) of the rank-1 trial."""
    from mnas.store import Store
    from mnas.store.query import ranked_trials

    with Store(run, readonly=True) as store:
        t = ranked_trials(store, 1)[0]
    return t.id, t.arch


def export_json(*args, code=0):
    p = mnas("export", *args, "--json", check=False)
    assert p.returncode == code, p.stderr
    return json.loads(p.stdout)


def one_line_error(p, *needles):
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", pytest.param("tflite", marks=pytest.mark.slow)])  # litert-torch: slow
def test_trained_file_scores_pytorchs_top1_in_its_own_runtime(fmt, trained, tmp_path):
    if fmt == "tflite" and not HAS_LITERT:
        pytest.skip("litert-torch and ai-edge-litert are not installed (pip install 'mnas[litert]')")
    out = tmp_path / f"m.{fmt}"
    d = export_json("--weights", trained, "--format", fmt, "--out", out, "--no-measure")
    p = d["parity"]
    assert p["runtime"] == {"onnx": "onnxruntime", "tflite": "litert", "torchscript": "torch.jit"}[fmt]
    assert p["images"] == p["images_total"] == 359 and not p["limited"]  # digits: 20% of 1,797 held out
    assert abs(p["diff_points"]) <= 0.1 and p["file_top1"] > 0.5 and p["pytorch_top1"] > 0.5
    assert p["pytorch_top1"] == pytest.approx(ckpt.read(trained)["best_top1"])  # training's own evaluation
    assert d["weights_source"] == "checkpoint" and d["checkpoint"] == str(trained / "best.pt")
    assert d["input_shape"] == ([1, 16, 16, 1] if fmt == "tflite" else [1, 1, 16, 16])  # LiteRT takes NHWC
    assert d["num_classes"] == 10 and out.exists()
    assert d["metadata"]["mnas_arch"] == TINY.canonical
    assert json.loads((tmp_path / f"m.{fmt}.json").read_text())["verified"] == p


def test_onnx_metadata_is_the_checkpoints(trained, tmp_path):
    import onnx

    out = tmp_path / "m.onnx"
    d = export_json("--weights", trained / "last.pt", "--out", out, "--no-measure", "--verify-limit", "50")
    assert d["parity"]["images"] == 50 and d["parity"]["limited"]
    meta = ckpt.info(ckpt.read(trained / "last.pt"))
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["mnas_arch"] == meta.arch and props["mnas_name"] == "tiny"
    assert json.loads(props["classes"]) == [str(i) for i in range(10)] == list(meta.classes)
    assert json.loads(props["mean"]) == list(meta.mean) and json.loads(props["std"]) == list(meta.std)
    assert (props["resolution"], props["in_chans"], props["num_classes"]) == ("16", "1", "10")
    assert props["input_layout"] == "NCHW" and float(props["eval_crop"]) == meta.eval_crop == 1.0
    assert "(pixel / 255 - mean) / std" in props["preprocessing"] and props["mnas_version"]
    # an application that follows the recorded preprocessing from raw pixels gets the verified top-1
    import onnxruntime as ort
    from mnas.data import load_dataset
    data = load_dataset("digits", 16, meta.split["holdout"], meta.split["seed"])
    mean, std = (np.array(json.loads(props[k]), np.float32)[None, :, None, None] for k in ("mean", "std"))
    from mnas.deploy.parity import stratified
    keep = stratified(data.y_val.numpy(), 50)  # the 50 images --verify-limit 50 verified on
    x = (data.x_val[keep].numpy() / np.float32(255) - mean) / std
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    pred = np.array([int(sess.run(None, {"input": xi[None].astype(np.float32)})[0].argmax()) for xi in x])
    top1 = np.mean(pred == data.y_val[keep].numpy())
    assert abs(top1 - d["parity"]["file_top1"]) <= 1 / 50 and top1 > 0.5  # one borderline image at most


def test_torchscript_and_pytorch_files_carry_the_same_metadata(trained, tmp_path):
    from mnas.deploy.export import read_metadata

    d = export_json("--weights", trained, "--format", "pytorch", "--out", tmp_path / "m.pt", "--no-measure",
                    "--no-verify")
    assert d["parity"] is None
    blob = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=True)
    assert blob["metadata"] == d["metadata"] == read_metadata(tmp_path / "m.pt", "pytorch")
    assert blob["arch"] == TINY.canonical and blob["resolution"] == 16 and blob["in_chans"] == 1
    export_json("--weights", trained, "--format", "torchscript", "--out", tmp_path / "m.ts", "--no-measure",
                "--verify-limit", "20")
    extra = {"mnas.json": ""}
    torch.jit.load(str(tmp_path / "m.ts"), _extra_files=extra)
    assert json.loads(extra["mnas.json"])["classes"] == d["metadata"]["classes"]


def test_a_trial_without_weights_is_refused_and_exported_only_when_asked(run, tmp_path):
    out = tmp_path / "m.onnx"
    p = mnas("export", run, "--rank", "1", "--out", out, check=False)
    one_line_error(p, "--weights", "--random-weights")
    assert not out.exists()
    d = export_json(run, "--rank", "1", "--random-weights", "--out", out, "--runs", "2")
    assert d["weights_source"] == "random" and not d["weights_loaded"] and d["parity"] is None
    assert d["measured"]["runs"] == 2 and d["input_shape"] == [1, 3, 32, 32]  # the search's latency settings
    assert d["metadata"]["weights"].startswith("random") and "mean" not in d["metadata"]
    assert json.loads((tmp_path / "m.onnx.json").read_text())["mnas_arch"] == d["arch"]
    one_line_error(mnas("export", run, "--random-weights", "--verify", "--out", out, check=False), "--verify")


def test_no_experiment_needs_a_checkpoint(trained, tmp_path):
    one_line_error(mnas("export", "--out", tmp_path / "m.onnx", check=False), "--weights")
    one_line_error(mnas("export", "--rank", "1", "--weights", trained, "--out", tmp_path / "m.onnx", check=False),
                   "experiment")
    one_line_error(mnas("export", "--weights", tmp_path / "nothing", "--out", tmp_path / "m.onnx", check=False),
                   "no checkpoint")
    assert not (tmp_path / "m.onnx").exists()


def test_checkpoint_of_another_architecture_is_refused_for_a_trial(run, trained, tmp_path):
    tid, _ = best_trial(run)
    p = mnas("export", run, "--trial", tid, "--weights", trained, "--out", tmp_path / "m.onnx", check=False)
    one_line_error(p, f"not trial {tid}'s architecture", "tiny")
    p = mnas("export", run, "--trial", tid, "--weights", trained, "--random-weights", "--out", tmp_path / "m.onnx",
             check=False)
    one_line_error(p, "not both")
    assert not (tmp_path / "m.onnx").exists()


def test_a_trial_with_its_own_checkpoint_takes_its_input_from_it(run, tmp_path):
    tid, arch = best_trial(run)
    ck = train(Architecture.parse(arch), tmp_path / "trial", epochs=0.05, train_limit=64)
    d = export_json(run, "--trial", tid, "--weights", ck, "--out", tmp_path / "t.onnx", "--no-measure",
                    "--verify-limit", "30")
    # the search timed 3-channel 32 px inputs; the checkpoint was trained on 1-channel 16 px digits
    assert d["trial"] == tid and d["arch"] == arch and d["input_shape"] == [1, 1, 16, 16] and d["searched_resolution"] == 32
    assert d["settings"]["in_chans"] == 1 and d["settings"]["runs"] == 3  # the rest: the search's
    assert d["parity"]["images"] == 30 and abs(d["parity"]["diff_points"]) <= 0.1


def test_a_dataset_that_moved_or_does_not_fit(trained, tmp_path):
    blob = ckpt.read(trained)
    moved = dict(blob, model_info={**blob["model_info"], "dataset": f"npz:{tmp_path / 'gone.npz'}"})
    moved.pop("path")
    ckpt.write(tmp_path / "moved" / "best.pt", moved)
    out = tmp_path / "m.onnx"
    one_line_error(mnas("export", "--weights", tmp_path / "moved", "--out", out, check=False),
                   "cannot load", "--dataset SPEC", "--no-verify")
    assert not out.exists()
    d = export_json("--weights", tmp_path / "moved", "--out", out, "--no-measure", "--dataset", "digits")
    assert d["parity"]["dataset"] == "digits" and abs(d["parity"]["diff_points"]) <= 0.1
    assert export_json("--weights", tmp_path / "moved", "--out", out, "--no-measure", "--no-verify")["parity"] is None
    rng = np.random.default_rng(0)  # three classes of 3-channel images: not what the checkpoint knows
    np.savez(tmp_path / "three.npz", x=rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), y=np.arange(30) % 3)
    p = mnas("export", "--weights", trained, "--out", out, "--dataset", f"npz:{tmp_path / 'three.npz'}",
             check=False)
    one_line_error(p, "3 classes", "10 classes")


# --- int8, dynamic batch, layouts, portable metadata, stratified verification (issue 31 item 5) ----------

def test_int8_onnx_is_quantised_keeps_top1_and_is_timed_against_float32(trained, tmp_path):
    import onnx

    out = tmp_path / "q.onnx"
    d = export_json("--weights", trained, "--quantize", "int8", "--out", out, "--runs", "3")
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ: onnxruntime runs the convolutions in int8
    p = d["parity"]
    assert p["runtime"] == "onnxruntime" and p["images"] == 359 and p["max_diff_points"] == 1.0
    # the int8 file against float32 PyTorch on the whole validation split: within a point (measured +0.3)
    assert abs(p["diff_points"]) <= 1.0 and p["file_top1"] > 0.5, p
    assert d["quantize"] == "int8" and d["metadata"]["quantize"] == "int8"
    assert "128 images of the training split of digits" in d["metadata"]["calibration"]
    assert d["measured"]["extra"]["quantize"] == "int8" and d["measured_fp32"]["extra"]["quantize"] == "none"
    assert d["measured"]["median_ms"] > 0 and d["measured_fp32"]["median_ms"] > 0
    assert d["measured"]["extra"]["interleaved"] == 2


def test_int8_latency_setting_is_in_the_cache_key_and_times_a_quantised_file(tmp_path, monkeypatch):
    from mnas.latency import LatencyCache, LatencySettings, get_backend, measure
    from mnas.latency.cache import cache_key
    from mnas.latency import protocol

    be = get_backend("onnxruntime")
    fp32 = LatencySettings(resolution=16, num_classes=10, runs=3, rounds=1, warmup=1)
    int8 = fp32.replace(quantize="int8")
    key = cache_key(TINY.canonical, be.identity(fp32), fp32)
    assert key != cache_key(TINY.canonical, be.identity(int8), int8)
    assert "quantize" not in fp32.key_fields()  # float32 results cached before the setting keep their keys
    files = []
    real = protocol.model_file
    monkeypatch.setattr("mnas.latency.local.model_file", lambda *a: files.append(real(*a)) or files[-1])
    cache = LatencyCache(tmp_path / "c.sqlite")
    r = measure(TINY, be, int8, cache)
    assert r.extra["quantize"] == "int8" and r.median_ms > 0 and not r.cached
    assert b"QuantizeLinear" in files[-1]  # the file timed is the quantised one
    assert not measure(TINY, be, fp32, cache).cached  # an int8 result never stands in for float32
    assert b"QuantizeLinear" not in files[-1]
    assert measure(TINY, be, int8, cache).cached and len(cache) == 2


def test_dynamic_batch_onnx_runs_batches_of_1_and_3(trained, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "d.onnx"
    d = export_json("--weights", trained, "--dynamic-batch", "--out", out, "--no-measure", "--no-verify")
    assert d["metadata"]["batch"] == "dynamic"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = ckpt.load_model(ckpt.read(trained)).eval()
    for n in (1, 3):
        x = np.random.default_rng(n).standard_normal((n, 1, 16, 16), dtype=np.float32)
        got = sess.run(None, {"input": x})[0]
        with torch.inference_mode():
            assert got.shape == (n, 10) and np.allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-4)


@pytest.mark.slow  # one litert-torch conversion: seconds
def test_tflite_takes_nhwc_carries_its_labels_and_quantises_to_full_integer(trained, tmp_path):
    if not HAS_LITERT or not importlib.util.find_spec("ai_edge_quantizer"):
        pytest.skip("litert-torch, ai-edge-litert and ai-edge-quantizer are not installed (pip install 'mnas[litert]')")
    from ai_edge_litert.interpreter import Interpreter

    from mnas.deploy.export import TFLITE_LABELS, tflite_metadata

    out = tmp_path / "q.tflite"
    d = export_json("--weights", trained, "--format", "tflite", "--quantize", "int8", "--out", out, "--no-measure")
    (out.parent / f"{out.name}.json").unlink()  # what the file alone says
    data = out.read_bytes()
    inp = Interpreter(model_content=data).get_input_details()[0]
    assert list(inp["shape"]) == [1, 16, 16, 1] and inp["dtype"] == np.int8  # NHWC, full integer
    entries = tflite_metadata(data)
    assert entries[TFLITE_LABELS].decode().splitlines() == [str(i) for i in range(10)]
    meta = json.loads(entries["mnas"])
    assert meta["input_layout"] == "NHWC" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["quantize"] == "int8" and d["input_shape"] == [1, 16, 16, 1]
    # verified in LiteRT, the float input quantised with the file's scale: within a point of float32 (measured
    # +0.3; -2.0 when the ranges were a moving average of each image's, -8.4 through PT2E)
    assert d["parity"]["runtime"] == "litert" and abs(d["parity"]["diff_points"]) <= 1.0, d["parity"]


def test_metadata_names_no_directory(trained, tmp_path):
    from mnas.deploy.export import metadata
    from mnas.latency import LatencySettings

    blob = ckpt.read(trained)
    where = str(tmp_path / "data")
    moved = dict(blob, model_info={**blob["model_info"], "dataset": f"npz:{where}/digits.npz"})
    meta = metadata(TINY.canonical, LatencySettings(resolution=16, in_chans=1, num_classes=10), moved)
    text = json.dumps(meta)
    assert meta["dataset"] == "npz:digits.npz" and where not in text and str(trained) not in text


def test_verify_limit_samples_every_class(trained):
    """Validation images sorted by class: the first ten are all zeros, a stratified ten are one per class."""
    import dataclasses

    from mnas.data.base import Dataset
    from mnas.deploy.parity import verify_top1
    from mnas.train.config import TrainConfig

    y = torch.arange(10).repeat_interleave(20)  # 200 images, class by class
    x = (y * 20).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()  # the pixel says the class
    data = Dataset("sorted", x, y, x, y, 10, 1, 4, (0.0,), (1.0,), tuple(map(str, range(10))))
    seen: set[int] = set()

    def infer(batch):
        classes = np.rint(batch[:, 0, 0, 0] * 255 / 20).astype(int)
        seen.update(classes.tolist())
        return np.eye(10, dtype=np.float32)[classes]

    model = lambda xb: torch.from_numpy(infer(xb.numpy()))  # noqa: E731
    cfg = TrainConfig(device="cpu", resolution=4, normalize="dataset", eval_crop=1.0)
    p = verify_top1(model, infer, (1, 1, 4, 4), "onnx", dataclasses.replace(data), cfg, limit=10)
    assert seen == set(range(10)) and p["images"] == 10 and p["limited"] and p["file_top1"] == 1.0


@pytest.mark.parametrize("args, needles", [
    (("--format", "torchscript", "--quantize", "int8"), ("--quantize int8", "--format onnx")),
    (("--format", "onnx", "--quantize", "int4"), ("int4", "int8")),
    (("--format", "tflite", "--dynamic-batch"), ("--dynamic-batch", "tflite")),
])
def test_formats_that_cannot_are_refused_in_one_line(trained, tmp_path, args, needles):
    p = mnas("export", "--weights", trained, "--out", tmp_path / "x", *args, check=False)
    one_line_error(p, *needles)
    assert not list(tmp_path.iterdir())
