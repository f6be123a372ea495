"""Full training into a folder (``mnas train --out``): checkpoints that round-trip, a resume after kill -9 that
loses no epoch and repeats none (and lands on the very numbers of an uninterrupted run), and one-line refusals."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mnas.space import zoo
from mnas.testing import cpu_seconds, run_cli as mnas, wait_for
from mnas.train import checkpoint as ckpt
from mnas.data import load_dataset
from mnas.train.config import TrainConfig
from mnas.train.full import train_full

# digits at 16 px: 11 steps of 128 per epoch through the CLI, about a second an epoch on one thread
RECIPE = ["--recipe", "cifar", "--resolution", "16", "--batch-size", "128", "--holdout", "0.2", "--threads", "1",
          "--device", "cpu"]
ARGS = ["mnasnet-small", "--dataset", "digits", *RECIPE]


def cfg(**kw) -> TrainConfig:
    return TrainConfig(recipe="cifar", resolution=16, batch_size=64, holdout=0.2, threads=1, device="cpu",
                       train_limit=640, **kw)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", 16, 0.2, 0)


def test_checkpoint_round_trip(tmp_path, digits):
    r = train_full(zoo.get("mnasnet-small"), digits, cfg(epochs=2), tmp_path / "run", name="mnasnet-small")
    assert r.ok and r.epochs == r.total_epochs == 2
    blob = ckpt.read(tmp_path / "run", ckpt.LAST)
    meta = ckpt.info(blob)
    assert (blob["epoch"], meta.num_classes, meta.in_chans, meta.resolution) == (2, 10, 1, 16)
    assert meta.arch == zoo.get("mnasnet-small").canonical and meta.name == "mnasnet-small"
    assert len(meta.mean) == len(meta.std) == 1 and meta.dataset == "digits" and blob["recipe"]["recipe"] == "cifar"
    assert blob["ema"] is not None and blob["optimizer"]["state"] and "generator" in blob["rng"]
    # the checkpoint alone rebuilds a model that scores what the run reported, on the same split
    model = ckpt.load_model(blob)
    x = digits.x_val.float().div(255).sub(meta.mean[0]).div(meta.std[0])
    with torch.inference_mode():
        top1 = float((model(x).argmax(1) == digits.y_val).float().mean())
    assert top1 == pytest.approx(r.top1, abs=2.5 / len(digits.y_val))  # memory layout may flip a tie or two
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").open()))
    assert [int(h["epoch"]) for h in rows] == [1, 2] and float(rows[1]["val_top1"]) == pytest.approx(r.top1)
    best = ckpt.read(tmp_path / "run")  # a folder means best.pt
    assert best["path"].endswith(ckpt.BEST) and best["best_top1"] == max(h["val_top1"] for h in history)


@pytest.mark.slow
def test_resume_after_kill_loses_nothing_and_repeats_nothing(tmp_path):
    straight = mnas("train", *ARGS, "--epochs", "3", "--dir", tmp_path / "straight", "--json")
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mnas", "train", *ARGS, "--epochs", "3", "--dir", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: proc.poll() is not None or (out / "history.json").exists(),
             progress=[lambda: cpu_seconds(proc.pid)], poll_s=0.05, what="the first epoch")
    proc.kill()  # SIGKILL
    proc.wait()
    done = len(json.loads((out / "history.json").read_text()))
    assert 1 <= done <= 3
    again = mnas("train", *ARGS, "--epochs", "3", "--dir", out)  # no --resume: refused, nothing touched
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
    resumed = mnas("train", *ARGS, "--epochs", "3", "--dir", out, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    got, want = json.loads(resumed.stdout), json.loads(straight.stdout)
    assert got["resumed_from"] == ckpt.read(out, ckpt.LAST)["history"][done - 1]["epoch"] == done
    assert [h["epoch"] for h in got["history"]] == [1, 2, 3]
    # one thread, restored random states: the interrupted run is the uninterrupted one, number for number
    assert [h["val_top1"] for h in got["history"]] == [h["val_top1"] for h in want["history"]]
    assert [h["train_loss"] for h in got["history"]] == pytest.approx([h["train_loss"] for h in want["history"]])
    finished = mnas("train", *ARGS, "--epochs", "3", "--dir", out, "--resume", "--json")
    assert json.loads(finished.stdout)["resumed_from"] == 3  # nothing left to train


def test_resume_refuses_another_architecture_or_label_set(tmp_path):
    out = tmp_path / "run"
    assert mnas("train", *ARGS, "--epochs", "1", "--dir", out).returncode == 0
    other = mnas("train", "mobilenet-v2", "--dataset", "digits", *RECIPE, "--epochs", "1", "--dir", out, "--resume")
    assert other.returncode == 2 and "another architecture" in other.stderr and other.stderr.count("\n") == 1
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "three.npz", x=rng.integers(0, 255, (90, 16, 16), dtype=np.uint8), y=np.arange(90) % 3)
    classes = mnas("train", *ARGS[:1], "--dataset", f"npz:{tmp_path / 'three.npz'}", *RECIPE, "--epochs", "1",
                   "--dir", out, "--resume")
    assert classes.returncode == 2 and "3 and 1" in classes.stderr and classes.stderr.count("\n") == 1
    recipe = mnas("train", *ARGS, "--epochs", "1", "--lr", "0.3", "--dir", out, "--resume")
    assert recipe.returncode == 2 and "lr" in recipe.stderr and recipe.stderr.count("\n") == 1


def test_unreadable_checkpoints_are_one_line(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    r = mnas("train", *ARGS, "--epochs", "1", "--dir", tmp_path, "--resume")
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr and r.stderr.count("\n") == 1
    torch.save({"state_dict": {}}, tmp_path / "last.pt")
    r = mnas("train", *ARGS, "--epochs", "1", "--dir", tmp_path, "--resume")
    assert r.returncode == 2 and "not an mnas training checkpoint" in r.stderr
