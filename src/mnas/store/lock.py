"""One writer per experiment directory: an OS file lock (``flock``) on ``EXPERIMENT/experiment.lock``.

The writer holds the lock for its whole life and the kernel drops it when the process ends, however it
ends (kill -9 included), so a crash never leaves a stale lock behind. The file names its holder (pid,
command, start time) so that a refused second writer can say who is running; it is only rewritten once
the lock is held, so a refused attempt never erases the holder's name.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from mnas import MnasError

LOCK_NAME = "experiment.lock"
RETRAIN_LOCK_NAME = "retrain.lock"  # mnas retrain writes only its own table: it may run beside the search


class DirectoryLock:
    """Held from construction until ``release()``; MnasError naming the holder when another process has it."""

    def __init__(self, directory: Path, name: str = LOCK_NAME, what: str = "one writer per experiment") -> None:
        self.path = directory / name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            os.close(fd)
            raise MnasError(f"{directory} is in use by {holder}: {what}; wait for it to finish or stop it") \
                from None
        # a file object closes its descriptor, and so drops the lock, even when its owner is garbage collected
        # unclosed (flock conflicts between two descriptors of the same file within one process too)
        self._file = os.fdopen(fd, "r+b")
        self._file.truncate(0)
        self._file.write(json.dumps(_me()).encode())
        self._file.flush()

    def release(self) -> None:
        self._file.close()


def _me() -> dict[str, object]:
    program = Path(sys.argv[0])  # `python -m mnas` runs .../mnas/__main__.py: call it mnas
    name = program.parent.name if program.name == "__main__.py" else program.name
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join([name, *sys.argv[1:]]),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        pid, host, command, since = info["pid"], info["host"], info["command"], info["since"]
    except (ValueError, KeyError, TypeError):  # the holder has not written its name yet
        return "another process"
    where = "" if host == socket.gethostname() else f" on {host}"
    return f"process {pid}{where} ({command}) since {since}"
