"""Training checkpoints: one file per state (``last.pt`` after every epoch, ``best.pt`` when the held-out
top-1 improves), written atomically, readable with ``torch.load(..., weights_only=True)``.

A checkpoint carries what it takes to use the model without the run that made it: the architecture string
(at the width trained), classes, input channels, resolution, the normalisation, the dataset and split, the
recipe and the mnas version. ``load_model`` builds the network from it alone.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnas import MnasError, __version__

FORMAT = "mnas-checkpoint"
FORMAT_VERSION = 1
LAST, BEST = "last.pt", "best.pt"


@dataclass(frozen=True)
class ModelInfo:
    """How the checkpoint's network is built and fed."""

    arch: str                       # canonical string of the network as trained (width applied)
    name: str                       # what the user named it (zoo name, string, trial)
    num_classes: int
    in_chans: int
    resolution: int
    mean: tuple[float, ...]         # per channel, [0, 1] units: input = (pixel / 255 - mean) / std
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    eval_crop: float = 1.0          # evaluation: the centre square of this fraction of the shorter side
    dataset: str = ""
    split: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"], d["classes"] = list(self.mean), list(self.std), list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"]), "classes": tuple(d.get("classes", ()))})


def resolve(path: str | Path, prefer: str = BEST) -> Path:
    """A checkpoint file, or a training folder's ``best.pt`` (``prefer``) falling back to ``last.pt``."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in (prefer, LAST, BEST):
            if (p / name).is_file():
                return p / name
        raise MnasError(f"{p} holds no checkpoint ({BEST} or {LAST}): train into it with mnas train ARCH --dir {p}")
    if not p.is_file():
        raise MnasError(f"no checkpoint at {p}: give a training folder (mnas train ARCH --dir DIR) or a .pt file in it")
    return p


def read(path: str | Path, prefer: str = BEST) -> dict[str, Any]:
    """The checkpoint's contents, checked to be an mnas checkpoint this version reads."""
    p = resolve(path, prefer)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise MnasError(f"{p} is not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise MnasError(f"{p} is not an mnas training checkpoint (mnas train ARCH --dir DIR writes them)")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise MnasError(f"{p} was written by a newer mnas ({blob.get('mnas_version')}): upgrade mnas to read it")
    blob["path"] = str(p)
    return blob


def info(blob: dict[str, Any]) -> ModelInfo:
    return ModelInfo.from_dict(blob["model_info"])


def write(path: Path, blob: dict[str, Any]) -> None:
    """Write ``blob`` to ``path`` so that a kill at any moment leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared run's checkpoints private
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "mnas_version": __version__, **blob}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def weights(blob: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate and ship: the EMA's when the recipe kept one, else the model's."""
    return blob.get("ema") or blob["model"]


def load_model(blob: dict[str, Any]) -> nn.Module:
    """The checkpoint's network, built from its own metadata, its weights loaded, in eval mode."""
    from mnas.model import build
    from mnas.space.arch import Architecture

    meta = info(blob)
    model = build(Architecture.parse(meta.arch), num_classes=meta.num_classes, in_chans=meta.in_chans)
    try:
        model.load_state_dict(weights(blob))
    except RuntimeError as e:
        raise MnasError(f"{blob.get('path', 'the checkpoint')}: its weights do not fit its architecture "
                        f"({str(e).splitlines()[0][:120]})") from None
    return model.eval()


def check_compatible(blob: dict[str, Any], arch: str, num_classes: int, in_chans: int) -> None:
    """Refuse to resume a checkpoint of another network or another label set, in one line."""
    meta = info(blob)
    where = blob.get("path", "the checkpoint")
    if meta.arch != arch:
        raise MnasError(f"{where} holds another architecture ({meta.arch[:60]}...), not {arch[:60]}...: "
                        "train into another --dir folder")
    if (meta.num_classes, meta.in_chans) != (num_classes, in_chans):
        raise MnasError(f"{where} was trained for {meta.num_classes} classes, {meta.in_chans} channel(s); "
                        f"this dataset has {num_classes} and {in_chans}: train into another --dir folder")


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a training run draws from (numpy's is not used by the trainer)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "generator": generator.get_state(),
                             "python": _python_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), None if gauss is None or math.isnan(gauss) else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
