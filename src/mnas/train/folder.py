"""A training folder (``mnas train ARCH --dir DIR``, each model ``mnas retrain`` trains) gets a search
experiment's guarantees:

- one writer: an OS lock (``DIR/train.lock``, ``flock``) held for the whole run; a second ``mnas train``
  into the folder is refused in one line naming the first, and a kill -9 never leaves a stale lock;
- one run: ``DIR/run.json`` records what the folder trains (architecture, dataset and split, classes, the
  recipe's learning settings), written on first use and checked on every reuse, so a folder is never
  overwritten by another run, even one that left only ``best.pt`` behind;
- ``--resume`` continues something or is refused: a folder that does not exist or holds no ``last.pt``.

The checkpoints themselves are written by ``mnas.train.full`` in an order that leaves no ambiguous folder
(``last.pt`` first: see ``full._one_epoch``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mnas import MnasError, __version__
from mnas.fileio import atomic_write
from mnas.store.lock import DirectoryLock
from mnas.train import checkpoint as ckpt

LOCK_NAME, IDENTITY = "train.lock", "run.json"
IDENTITY_FORMAT = "mnas-training-run"


class TrainFolder:
    """``path``, locked for this process until ``release()`` (or the end of a ``with`` block)."""

    def __init__(self, path: Path, lock: DirectoryLock) -> None:
        self.path, self._lock = path, lock

    @classmethod
    def claim(cls, path: str | Path, resume: bool = False, strict: bool = False) -> TrainFolder:
        """Lock ``path`` (created unless resuming). ``strict`` (the CLI's ``--resume``): the folder must exist
        and hold a ``last.pt`` to continue; otherwise ``resume`` continues one when there is one."""
        path = Path(path).expanduser()
        check_target(path, resume and strict)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MnasError(f"cannot create the training folder {path} ({e.strerror}): choose another --dir") \
                from None
        try:
            lock = DirectoryLock(path, LOCK_NAME, what="one training per folder")
        except OSError as e:  # a read-only or full file system
            raise MnasError(f"cannot lock the training folder {path} ({e.strerror}): choose another --dir") \
                from None
        folder = cls(path, lock)
        if resume and strict and not (path / ckpt.LAST).is_file():  # checked again, now that no one else writes
            folder.release()
            check_target(path, True)
        return folder

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> TrainFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- the run's identity

    def identity(self) -> dict[str, Any] | None:
        p = self.path / IDENTITY
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise MnasError(f"{p} is damaged ({type(e).__name__}): restore it, or delete it to let a --resume "
                            "check the checkpoint itself") from None
        if not isinstance(d, dict) or d.get("format") != IDENTITY_FORMAT or not isinstance(d.get("recipe"), dict):
            raise MnasError(f"{p} is not an mnas training record: restore it, or delete it to let a --resume "
                            "check the checkpoint itself")
        return d

    def check(self, want: dict[str, Any], resume: bool) -> None:
        """Refuse a run that is not the one this folder holds, and a fresh start over checkpoints; record
        ``want`` on first use."""
        have = self.identity()
        if have is not None:
            _compare(self.path, have, want)
        last, best = self.path / ckpt.LAST, self.path / ckpt.BEST
        if not resume and last.is_file():
            blob = ckpt.read(last, ckpt.LAST)
            raise MnasError(f"{self.path} holds a training run at epoch {blob['epoch']} of {blob['total_epochs']}: "
                            "add --resume to continue it, or choose another --dir")
        if not last.is_file() and best.is_file():
            raise MnasError(f"{self.path} holds {ckpt.BEST} but no {ckpt.LAST}: nothing to continue, and a new run "
                            f"would overwrite it; move {ckpt.BEST} away or choose another --dir")
        if have is None and not last.is_file():
            self.record(want)

    def record(self, want: dict[str, Any]) -> None:
        if (self.path / IDENTITY).is_file():
            return
        d = {"format": IDENTITY_FORMAT, **want, "mnas_version": __version__,
             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_text(self.path / IDENTITY, json.dumps(d, indent=1) + "\n")


def check_target(path: Path, must_resume: bool) -> None:
    """What can be refused before any data is loaded: a file where a folder goes; a ``--resume`` of
    nothing."""
    if path.exists() and not path.is_dir():
        raise MnasError(f"--dir {path} is a file: give a folder to train into (it is created when missing)")
    if must_resume and not path.is_dir():
        raise MnasError(f"--resume: {path} does not exist, so there is nothing to continue: run without --resume")
    if must_resume and not (path / ckpt.LAST).is_file():
        raise MnasError(f"--resume: {path} holds no {ckpt.LAST}, so there is nothing to continue: run without "
                        "--resume (into another --dir if it holds files you keep)")


def identity_of(arch: str, data: Any, recipe: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the network, the data (classes, channels, spec, split) and the
    recipe's learning settings (``recipe``: the runtime ones already left out)."""
    return {"arch": arch, "num_classes": int(data.num_classes), "in_chans": int(data.in_chans),
            "dataset": data.name, "split": _split(data.split),
            "classes": [str(c) for c in data.classes], "recipe": json.loads(json.dumps(recipe))}


def _split(split: Any) -> Any:
    """A split as the run's identity holds it: whether it was read through a cache, not the cache's path (a
    resume may read the same cache from where it was moved to; ``full.RUNTIME_FIELDS``)."""
    if not isinstance(split, dict):
        return split
    return json.loads(json.dumps({k: (True if k == "cache" else v) for k, v in split.items()}))


def _compare(path: Path, have: dict[str, Any], want: dict[str, Any]) -> None:
    where = f"{path} was first used to train"
    have = {**have, "split": _split(have.get("split"))}  # a record written while it kept the cache's path
    if have.get("arch") != want["arch"]:
        raise MnasError(f"{where} another architecture ({str(have.get('arch'))[:60]}...), not "
                        f"{want['arch'][:60]}...: train into another --dir folder")
    if (have.get("num_classes"), have.get("in_chans")) != (want["num_classes"], want["in_chans"]):
        raise MnasError(f"{where} {have.get('num_classes')} classes, {have.get('in_chans')} channel(s); this "
                        f"dataset has {want['num_classes']} and {want['in_chans']}: train into another --dir folder")
    for key in ("dataset", "split", "classes"):
        if have.get(key) != want[key]:
            raise MnasError(f"{where} on another dataset ({key} {str(have.get(key))[:80]!r}, not "
                            f"{str(want[key])[:80]!r}): train into another --dir folder")
    recorded = have["recipe"]
    changed = sorted(k for k in want["recipe"] if recorded.get(k) != want["recipe"][k])
    if changed:
        k = changed[0]
        more = f" (and {len(changed) - 1} more setting(s))" if len(changed) > 1 else ""
        raise MnasError(f"{where} with {k} = {recorded.get(k)!r}, not {want['recipe'].get(k)!r}{more}: train "
                        "with the same recipe, or into another --dir folder")


def write_text(path: Path, text: str) -> None:
    """Atomically (``mnas.fileio.atomic_write``); a full disk is one MnasError line and leaves the old file."""
    try:
        atomic_write(path, text)
    except OSError as e:
        raise MnasError(f"cannot write {path} ({e.strerror or type(e).__name__}); the previous one is kept: "
                        "free space or fix the folder, then continue with --resume") from None
