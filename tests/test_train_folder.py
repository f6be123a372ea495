"""A training folder (``mnas train ARCH --dir DIR``) has a search experiment's guarantees: one writer (an OS
lock), one run (``run.json``, checked on every reuse), ``--resume`` of something or a refusal, checkpoints
written in an order a kill cannot make ambiguous, and a full disk or a wrong ``--dir`` as one line before
anything is lost (issue 30, failure 2)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from mnas.testing import run_cli as mnas
from mnas.train import checkpoint as ckpt
from mnas.store.lock import DirectoryLock

IDENTITY, LOCK = "run.json", "train.lock"  # the folder's record of its run, and its lock (mnas.train.folder)

TINY = "stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o16_se0.25:head32"
OTHER = "stem8:ds_r1_k3_s1_e1_i8_o8:ir_r1_k3_s2_e3_i8_o24_se0.25:head32"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """64 training and 16 held-out 16 px images of 4 classes: 4 steps of 16 an epoch, well under a second."""
    path = tmp_path_factory.mktemp("data") / "four.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (80, 16, 16), dtype=np.uint8), y=np.arange(80) % 4)
    return path


def train(data, out, *extra, arch=TINY, epochs=1):
    return mnas("train", arch, "--dataset", f"npz:{data}", "--recipe", "cifar", "--resolution", "16",
                "--batch-size", "16", "--holdout", "16", "--threads", "1", "--device", "cpu", "--epochs", epochs,
                "--dir", out, *extra)


def one_line(r, *words):
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_a_second_training_into_the_folder_is_refused_while_the_first_runs(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    first = DirectoryLock(out, LOCK)  # flock: a second descriptor conflicts, in this process as in another
    one_line(train(data, out), "in use by", "one training per folder")
    assert not (out / ckpt.LAST).exists()
    first.release()
    assert train(data, out).returncode == 0  # the lock goes with its holder


def test_a_folder_holding_only_best_pt_of_another_run_is_refused_not_overwritten(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, out).returncode == 0
    (out / ckpt.LAST).unlink()  # what a kill or a full disk in epoch 1 left (before run.json existed)
    (out / IDENTITY).unlink()
    kept = (out / ckpt.BEST).read_bytes()
    one_line(train(data, out, arch=OTHER), ckpt.BEST, "another --dir")
    one_line(train(data, out), ckpt.BEST, "another --dir")  # the same run: still nothing to continue
    assert (out / ckpt.BEST).read_bytes() == kept


def test_a_folder_is_kept_for_the_run_that_first_used_it(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, out).returncode == 0
    recorded = json.loads((out / IDENTITY).read_text())
    assert recorded["arch"] == TINY and recorded["dataset"].endswith("four.npz") and recorded["num_classes"] == 4
    for f in (ckpt.LAST, ckpt.BEST):
        (out / f).unlink()  # a run killed in its first epoch left only its record
    one_line(train(data, out, arch=OTHER), "another architecture")
    one_line(train(data, out, "--lr", "0.3"), "lr = ")
    assert train(data, out).returncode == 0  # the run itself starts again


def test_resume_refuses_a_folder_with_nothing_to_resume(data, tmp_path):
    one_line(train(data, tmp_path / "missing", "--resume"), "does not exist", "without --resume")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    one_line(train(data, tmp_path / "empty", "--resume"), "nothing to continue")
    assert list((tmp_path / "empty").iterdir()) == []


def test_dir_naming_a_file_fails_before_any_data_is_loaded(data, tmp_path, monkeypatch):
    import mnas.train.trainer

    def no_data(*a, **k):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(mnas.train.trainer, "load_proxy_data", no_data)
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    one_line(train(data, f), "is a file")
    one_line(train(data, f, "--resume"), "is a file")
    assert f.read_text() == "mine"


class Killed(BaseException):
    """SIGKILL, as far as the process's own code can tell: nothing after it runs."""


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_kill_between_the_epochs_two_checkpoints_leaves_no_ambiguous_folder(epoch, data, tmp_path, monkeypatch):
    import mnas.train.full

    out, write, calls, scores = tmp_path / "run", ckpt.write, [], []

    def killed_after_the_first(path, blob):
        calls.append(path.name)
        if len(calls) == 2 * epoch:  # the epoch's first file is written, the second is not
            raise Killed
        write(path, blob)

    def better_every_epoch(net, run):
        scores.append(0.1 * (len(scores) + 1))
        return scores[-1], 1.0

    monkeypatch.setattr(ckpt, "write", killed_after_the_first)
    monkeypatch.setattr(mnas.train.full, "evaluate", better_every_epoch)
    r = train(data, out, epochs=2)
    assert r.returncode == 1 and "Killed" in r.stderr  # run_cli: a BaseException as the interpreter shows it
    monkeypatch.setattr(ckpt, "write", write)
    # the record of the run comes first: the epoch is there to resume, never a lone best.pt
    last = ckpt.read(out, ckpt.LAST)
    assert last["epoch"] == last["best_epoch"] == epoch
    assert ckpt.read(out)["epoch"] == epoch  # the folder's best is that epoch, whatever best.pt holds
    assert train(data, out, epochs=2).returncode == 2  # something to resume: not started over
    assert train(data, out, "--resume", epochs=2).returncode == 0
    last, best = ckpt.read(out, ckpt.LAST), torch.load(out / ckpt.BEST, weights_only=True)
    assert last["epoch"] == 2 and best["epoch"] == last["best_epoch"] == 2  # best.pt caught up
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    out, save, saves, before = tmp_path / "run", torch.save, [], []

    def full_from_epoch_2(obj, f, *a, **k):  # epoch 1 writes last.pt and best.pt; then the disk is full
        saves.append(obj["epoch"])
        if obj["epoch"] < 2:
            return save(obj, f, *a, **k)
        before.append((out / ckpt.LAST).read_bytes())
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_from_epoch_2)
    one_line(train(data, out, epochs=2), "No space left on device", "--resume")
    assert saves == [1, 1, 2] and (out / ckpt.LAST).read_bytes() == before[0]  # untouched
    assert ckpt.read(out, ckpt.LAST)["epoch"] == 1
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    monkeypatch.setattr(torch, "save", save)  # space freed
    assert train(data, out, "--resume", epochs=2).returncode == 0 and ckpt.read(out, ckpt.LAST)["epoch"] == 2


def test_a_run_resumes_through_its_cache_moved_to_another_folder(tmp_path):
    """The cache is a runtime setting (``full.RUNTIME_FIELDS``): the folder's record of the run's data must
    not hold its path, or moving the cache refuses the run's own resume."""
    from test_data_imagefolder import make_tree

    spec = f"imagefolder:{make_tree(tmp_path / 'tree', per_class=4, broken=False)}"
    first, moved, out = tmp_path / "cache-a", tmp_path / "cache-b", tmp_path / "run"
    assert mnas("data", "cache", spec, "--resolution", "12", "--dir", first, "--holdout", "3",
                "--workers", "0").returncode == 0

    def run(cache, *extra):
        return mnas("train", TINY, "--dataset", spec, "--cache", cache, "--holdout", "3", "--recipe", "cifar",
                    "--resolution", "12", "--batch-size", "9", "--epochs", "1", "--threads", "1", "--device",
                    "cpu", "--workers", "0", "--dir", out, *extra)

    assert run(first).returncode == 0
    first.rename(moved)
    r = run(moved, "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / IDENTITY).read_text())["split"] == {"holdout": 3, "seed": 0, "cache": True}
