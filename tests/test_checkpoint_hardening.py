"""Checkpoints with crafted or damaged fields (issue 30, failure 3): every consumer (export, ``train --resume``,
retrain) refuses them in one line, acts on no field before it is checked (a recorded dataset path is never
walked, an absurd size never allocated) and runs no code from the file; plus a fuzz test of the metadata."""

from __future__ import annotations

import json
import pickle
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnas import MnasError
from mnas.space import Architecture
from mnas.testing import run_cli as mnas
from mnas.train import TrainTask, load_proxy_data
from mnas.train import checkpoint as ckpt
from mnas.train.full import train_full

TINY = "stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32"
HUGE = "stem4096:ir_r32_k15_s1_e16_i4096_o4096:head4096"  # within the parser's caps, ~10^11 weights
TRAIN = ["--dataset", "digits", "--resolution", "16", "--batch-size", "64", "--threads", "1", "--device", "cpu",
         "--epochs", "1"]


def cfg() -> TrainTask:  # what TRAIN gives
    return TrainTask(dataset="digits", resolution=16, batch_size=64, threads=1, device="cpu", epochs=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    mnas("train", TINY, *TRAIN, "--dir", out, check=True)
    return out


@pytest.fixture(scope="module")
def blob(trained) -> dict:
    return torch.load(trained / ckpt.LAST, map_location="cpu", weights_only=True)


def with_info(blob: dict, **changes) -> dict:
    return {**blob, "model_info": {**blob["model_info"], **changes}}


DAMAGES = {
    "empty": lambda b, raw: b"",
    "truncated": lambda b, raw: raw[: len(raw) // 2],
    "a number as text": lambda b, raw: with_info(b, resolution="16"),
    "no model_info": lambda b, raw: {k: v for k, v in b.items() if k != "model_info"},
    "model_info a list": lambda b, raw: {**b, "model_info": [1, 2]},
    "an absurd resolution": lambda b, raw: with_info(b, resolution=10**9),
    "an absurd width": lambda b, raw: with_info(b, arch=HUGE),
    "an arch of another type": lambda b, raw: with_info(b, arch=5),
    "weights of another network": lambda b, raw: with_info(b, num_classes=1000),
    "a NaN mean": lambda b, raw: with_info(b, mean=[float("nan")]),
    "weights not tensors": lambda b, raw: {**b, "model": {"w": 3}, "ema": None},
    "a damaged history": lambda b, raw: {**b, "history": [{"epoch": "one"}]},
    "random states gone": lambda b, raw: {**b, "rng": {}},
}
RESUME_ONLY = {  # what only a resume reads -> the words of its refusal
    "an optimizer of another run": (lambda b, raw: {**b, "optimizer": {"state": {}, "param_groups": [{}] * 3}},
                                    "cannot be resumed"),
    "random states of another type": (lambda b, raw: {**b, "rng": {**b["rng"], "torch": torch.zeros(3)}},
                                      "cannot be resumed"),
    "more epochs than the recipe's": (lambda b, raw: {**b, "total_epochs": 10**6}, "records epoch 1 of 1000000"),
}


def plant(folder: Path, name: str, damaged) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(damaged, bytes):
        (folder / name).write_bytes(damaged)
    else:
        torch.save(damaged, folder / name)
    return folder


def one_line(r, *words):
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


@pytest.mark.parametrize("damage", [*DAMAGES, *RESUME_ONLY])
def test_a_damaged_checkpoint_is_one_line_in_export_and_resume(damage, blob, trained, tmp_path):
    make, words = (DAMAGES[damage], "") if damage in DAMAGES else RESUME_ONLY[damage]
    damaged = make(blob, (trained / ckpt.LAST).read_bytes())
    if damage in DAMAGES:
        out = tmp_path / "m.onnx"
        one_line(mnas("export", "--weights", plant(tmp_path / "e", ckpt.BEST, damaged), "--out", out,
                      "--no-measure"), ckpt.BEST)
        assert not out.exists()
    folder = plant(tmp_path / "r", ckpt.LAST, damaged)
    one_line(mnas("train", TINY, *TRAIN, "--dir", folder, "--resume"), str(folder / ckpt.LAST), words)


def test_a_damaged_checkpoint_is_one_line_in_retrain(tiny_search_copy):
    plan = mnas("retrain", tiny_search_copy, "--top", "0", "--references", "mnasnet-small", "--set",
                "resolution=16", "--set", "train_limit=64", "--epochs", "1", "--no-measure", "--dry-run", "--json")
    key = json.loads(plan.stdout)[0]["key"]
    folder = tiny_search_copy / "retrain" / f"mnasnet-small-{key.rpartition('|')[2]}"
    for damaged in (b"", {"format": ckpt.FORMAT, "format_version": 1, "model_info": "x"}):
        plant(folder, ckpt.LAST, damaged)
        one_line(mnas("retrain", tiny_search_copy, "--top", "0", "--references", "mnasnet-small", "--set",
                      "resolution=16", "--set", "train_limit=64", "--epochs", "1", "--no-measure"))


@pytest.mark.parametrize("spec, words", [("imagefolder:/proc/self", "kernel file system"),
                                         ("imagefolder:/sys", "kernel file system"),
                                         ("npz:/nowhere/at/all.npz", "cannot load")])
def test_a_recorded_dataset_path_is_checked_before_anything_reads_it(spec, words, blob, tmp_path, monkeypatch):
    from mnas.data import datasets

    def never(*a, **k):
        raise AssertionError(f"the export loaded {a[0]}")

    monkeypatch.setattr(datasets, "load_dataset", never)
    folder = plant(tmp_path / "c", ckpt.BEST, with_info(blob, dataset=spec))
    one_line(mnas("export", "--weights", folder, "--out", tmp_path / "m.onnx", "--no-measure"), words,
             "--dataset SPEC", "--no-verify")


class RunsCode:
    def __reduce__(self):
        return (Path.write_text, (Path(tempfile.gettempdir()) / "mnas-pwned", "ran"))


def test_loading_runs_no_code_from_the_file(blob, tmp_path):
    marker = Path(tempfile.gettempdir()) / "mnas-pwned"
    marker.unlink(missing_ok=True)
    for folder, name in ((tmp_path / "e", ckpt.BEST), (tmp_path / "r", ckpt.LAST)):
        folder.mkdir()
        with open(folder / name, "wb") as f:
            torch.save({**blob, "extra": RunsCode()}, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    one_line(mnas("export", "--weights", tmp_path / "e", "--out", tmp_path / "m.onnx", "--no-measure"), "readable")
    one_line(mnas("train", TINY, *TRAIN, "--dir", tmp_path / "r", "--resume"), "readable")
    assert not marker.exists()


def test_a_foreign_pickle_is_refused_without_torchs_warning_before_the_line(blob, tmp_path):
    """A process shows torch's warning about the pickle protocol on stderr before mnas's one line (pytest
    records warnings instead of showing them, so they are caught here as a process would print them)."""
    folder = tmp_path / "e"
    folder.mkdir()
    with open(folder / ckpt.BEST, "wb") as f:
        torch.save({**blob, "extra": RunsCode()}, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = mnas("export", "--weights", folder, "--out", tmp_path / "m.onnx", "--no-measure")
    one_line(r, "readable")
    assert [str(w.message)[:60] for w in caught] == []


# -- fuzzing: any value of any type in any field of a real checkpoint

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 3, 10**9, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["imagefolder:/proc/self", "npz:/nowhere.npz", "digits", HUGE, TINY, "stem8:head8"]),
    st.lists(st.integers(-5, 5) | st.floats(), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.binary(max_size=8), st.builds(torch.zeros, st.lists(st.integers(0, 3), max_size=3)))
DELETE = object()


@st.composite
def damaged_blobs(draw, blob: dict) -> dict:
    where = draw(st.sampled_from(["top", "model_info", "recipe", "rng", "history", "model", "split"]))
    value = draw(st.one_of(st.just(DELETE), VALUES))
    b = dict(blob)
    if where == "top":
        node = b
    elif where == "history":
        b["history"] = [dict(b["history"][0])]
        node = b["history"][0]
    elif where == "split":
        b["model_info"] = {**b["model_info"], "split": dict(b["model_info"]["split"])}
        node = b["model_info"]["split"]
    else:
        b[where] = node = dict(b[where])
    key = draw(st.sampled_from(sorted(node) + ["unknown"]))
    if value is DELETE:
        node.pop(key, None)
    else:
        node[key] = value
    return b


FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def digits():
    c = cfg()
    return load_proxy_data(c, c.seed)


@given(data=st.data())
@FUZZ
def test_fuzzed_checkpoint_metadata_is_one_line_or_works(data, blob, digits):
    from mnas.deploy.export import checkpoint_settings, metadata

    damaged = data.draw(damaged_blobs(blob))
    with tempfile.TemporaryDirectory() as tmp:
        folder = plant(Path(tmp), ckpt.LAST, damaged)
        try:
            read = ckpt.read(folder)
            ckpt.load_model(read)
            metadata(ckpt.info(read).arch, checkpoint_settings(read), read)
            ckpt.recorded_dataset(read)
            r = train_full(Architecture.parse(TINY), digits, cfg(), folder, resume=True)  # the finished run
            assert r.epochs == 1
        except MnasError as e:
            assert "\n" not in str(e) and len(str(e)) < 1000
