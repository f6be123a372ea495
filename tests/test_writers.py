"""Writers never destroy their inputs and never leave half a file (issue 30, failure 1): ``mnas export --out``
refuses the experiment's store and the checkpoints it reads, a write that fails (a full disk) leaves the
previous file as it was, and weights holding NaN are refused before anything is written."""

from __future__ import annotations

import errno
import io
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from mnas.space import Architecture
from mnas.testing import run_cli
from mnas.train import TrainTask, load_proxy_data
from mnas.train import checkpoint as ckpt
from mnas.train.full import train_full

TINY = Architecture.parse("stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16:head16")
FAST = ("--no-measure", "--no-verify")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A training folder (best.pt, last.pt) of TINY: one short epoch on digits at 16 px."""
    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    cfg = TrainTask(dataset="digits", resolution=16, width_multiplier=1.0, batch_size=64, epochs=1, threads=1,
                    device="cpu", train_limit=128)
    r = train_full(TINY, load_proxy_data(cfg, cfg.seed), cfg, out, name="tiny")
    assert r.ok, r.error
    return out


@pytest.fixture
def folder(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "tiny"))


def one_line_refusal(r, *needles):
    assert r.code == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


@pytest.mark.parametrize("target", [ckpt.BEST, ckpt.LAST])
def test_export_refuses_to_write_over_the_checkpoints_it_reads(folder, target):
    before = {n: (folder / n).read_bytes() for n in (ckpt.BEST, ckpt.LAST)}
    for weights in (folder / ckpt.BEST, folder):
        r = run_cli("export", "--weights", weights, "--format", "onnx", "--out", folder / target, *FAST)
        one_line_refusal(r, "destroy")
    # through another spelling of the same path, and the sidecar FILE.json of an output beside it
    r = run_cli("export", "--weights", folder / ckpt.BEST, "--out", folder / "x" / ".." / target, *FAST)
    one_line_refusal(r, "destroy")
    assert {n: (folder / n).read_bytes() for n in before} == before
    assert ckpt.read(folder / target)["model_info"]  # still a checkpoint


@pytest.mark.parametrize("out", ["run.json", "run", "train.lock"])
def test_export_refuses_to_write_over_the_training_folders_record_and_lock(folder, out):
    """``--out DIR/run`` writes its FILE.json over ``run.json``, the folder's record of its run (mnas.train.folder):
    a later ``--resume`` would be refused; a new ``train.lock`` would let a second training lock the folder."""
    before = {n: (folder / n).read_bytes() for n in ("run.json", "train.lock")}
    r = run_cli("export", "--weights", folder, "--format", "onnx", "--out", folder / out, *FAST)
    one_line_refusal(r, "destroy")
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_export_refuses_to_write_over_the_experiment_store(tiny_search_copy, folder):
    run = tiny_search_copy
    db = run / "experiment.db"
    before = db.read_bytes()
    for out in (db, run / "experiment.db-wal", run / "optuna.db"):
        r = run_cli("export", run, "--random-weights", "--format", "onnx", "--out", out, *FAST)
        one_line_refusal(r, "destroy")
    link = run.parent / "link.db"
    link.symlink_to(db)
    r = run_cli("export", run, "--random-weights", "--out", link, *FAST)
    one_line_refusal(r, "destroy")
    assert db.read_bytes() == before
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 3


def test_export_out_a_folder_is_one_line(folder, tmp_path):
    r = run_cli("export", "--weights", folder, "--out", tmp_path, *FAST)
    one_line_refusal(r, "is a folder")


class _FullDisk(io.RawIOBase):
    """A file that takes part of what it is given, then fails as a full disk does."""

    def __init__(self, real):
        self.real, self.written = real, 0

    def writable(self):
        return True

    def write(self, b):
        if self.written:
            raise OSError(errno.ENOSPC, "No space left on device")
        half = bytes(b)[: max(1, len(b) // 2)]
        self.written = self.real.write(half)
        return self.written

    def close(self):
        self.real.close()
        super().close()

    def fileno(self):
        return self.real.fileno()


def test_a_full_disk_during_export_leaves_the_previous_file(folder, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    assert run_cli("export", "--weights", folder, "--out", out, *FAST).code == 0
    previous, previous_json = out.read_bytes(), Path(f"{out}.json").read_bytes()
    real_open = io.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        name = file if isinstance(file, (str, Path)) else getattr(f, "name", "")
        inside = isinstance(file, int) or Path(str(name)).parent == tmp_path
        if "w" in mode and "b" in mode and inside:
            return io.BufferedWriter(_FullDisk(f), buffer_size=1)
        return f

    monkeypatch.setattr(io, "open", full_disk_open)
    r = run_cli("export", "--weights", folder, "--out", out, "--format", "onnx", *FAST)
    monkeypatch.undo()
    one_line_refusal(r, "No space left")
    assert out.read_bytes() == previous and Path(f"{out}.json").read_bytes() == previous_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json", "tiny"]  # no temp file


def test_nan_weights_are_refused_before_anything_is_written(folder, tmp_path):
    blob = ckpt.read(folder / ckpt.BEST)
    state = ckpt.weights(blob)
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    state[name] = state[name].clone()
    state[name][0] = float("nan")
    del blob["path"]
    ckpt.write(tmp_path / "nan.pt", blob)
    out = tmp_path / "nan.onnx"
    r = run_cli("export", "--weights", tmp_path / "nan.pt", "--out", out, *FAST)
    one_line_refusal(r, "NaN", name)
    assert not out.exists() and not Path(f"{out}.json").exists()
    state[name][0] = torch.inf
    ckpt.write(tmp_path / "inf.pt", blob)
    one_line_refusal(run_cli("export", "--weights", tmp_path / "inf.pt", "--out", out, *FAST), "infinite")


def test_an_export_that_fails_its_check_leaves_the_previous_pair(folder, tmp_path, monkeypatch):
    import mnas.deploy.export as deploy
    from mnas import MnasError

    out = tmp_path / "model.onnx"
    assert run_cli("export", "--weights", folder, "--out", out, *FAST).code == 0
    previous, previous_json = out.read_bytes(), Path(f"{out}.json").read_bytes()

    def broken(path, fmt, settings):  # the written file does not load in its runtime
        raise MnasError(f"{path} does not load in onnxruntime")

    monkeypatch.setattr(deploy, "load_exported", broken)
    r = run_cli("export", "--weights", folder, "--out", out, "--format", "torchscript", *FAST)
    one_line_refusal(r, "does not load")
    assert out.read_bytes() == previous and Path(f"{out}.json").read_bytes() == previous_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json", "tiny"]
