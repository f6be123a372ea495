"""Writing files a user names: atomically, and never over the files a command reads.

``atomic_write`` writes a temporary file in the destination's folder and renames it over the destination
(``os.replace``), so a full disk, an error or a kill at any moment leaves the previous file (or none), never
half of one. ``check_outputs`` refuses, in one line, an output path that is one of the command's inputs
(compared after resolving links and ``..``, and by inode where both exist): ``--out EXPERIMENT/experiment.db``
or ``--weights A/best.pt --out A/best.pt`` must never destroy what they read.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from mnas import MnasError


def atomic_write(path: str | Path, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function writing to a binary file) to ``path``: a temporary
    file beside it, flushed to disk, then renamed over it. On any failure the temporary file is removed and
    ``path`` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the file private to its writer
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # the rename itself survives a power cut
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` name one file: the same resolved path, or (both existing) the same inode."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[tuple[str | Path, str]], option: str = "--out") -> None:
    """Refuse an output that is an input, or an existing folder. ``inputs``: (path, what it is, in words)."""
    inputs = list(inputs)
    for out in outputs:
        out = Path(out)
        if out.is_dir():
            raise MnasError(f"{option} {out} is a folder: give the file to write, e.g. {out / 'model.onnx'}")
        for path, what in inputs:
            if same_file(out, path):
                raise MnasError(f"{option} {out} is {what}, which this command reads: writing there would "
                                "destroy it; give another file")
