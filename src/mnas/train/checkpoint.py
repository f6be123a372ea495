"""Training checkpoints: one file per state (``last.pt`` after every epoch, ``best.pt`` when the held-out
top-1 improves), written atomically, readable with ``torch.load(..., weights_only=True)``.

A checkpoint carries what it takes to use the model without the run that made it: the architecture string
(at the width trained), classes, input channels, resolution, the normalisation, the dataset and split, the
recipe and the mnas version. ``load_model`` builds the network from it alone.

Every reader goes through ``read``, which checks the file against one schema (``Checkpoint``): a damaged or
crafted field (a wrong type, a missing key, an absurd resolution or width) is one ``MnasError`` line naming
the file and the field, never a traceback, and nothing in it is acted on before it is checked. Loading runs
no code from the file (``weights_only``), and a recorded dataset path is data: ``recorded_dataset`` checks
it names an existing file or folder outside the kernel's virtual file systems before anything reads it.
"""

from __future__ import annotations

import math
import os
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import torch
from pydantic import ConfigDict, Field, field_validator, model_validator
from torch import nn

from mnas import MnasError, __version__
from mnas.fileio import atomic_write
from mnas.schema import Schema, renamed, validate

FORMAT = "mnas-checkpoint"
FORMAT_VERSION = 1
LAST, BEST = "last.pt", "best.pt"
# what a checkpoint may ask a reader to build: beyond these it is damaged or crafted, not a model
MAX_RESOLUTION, MAX_CHANNELS, MAX_CLASSES, MAX_TEXT = 4096, 64, 100_000, 10_000
VIRTUAL_FS = ("/proc", "/sys", "/dev")  # kernel file systems: a dataset path there is never data to read


class _Record(Schema):
    """What a checkpoint recorded: strict types (a string is not a number), finite numbers, unknown keys
    ignored (a later 1.x may add some), frozen."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, allow_inf_nan=False,
                              arbitrary_types_allowed=True)


class ModelInfo(_Record):
    """How the checkpoint's network is built and fed."""

    arch: str = Field(max_length=MAX_TEXT)  # canonical string of the network as trained (width applied)
    name: str = Field(max_length=MAX_TEXT)  # what the user named it (zoo name, string, trial)
    num_classes: int = Field(ge=1, le=MAX_CLASSES)
    in_chans: int = Field(ge=1, le=MAX_CHANNELS)
    resolution: int = Field(ge=4, le=MAX_RESOLUTION)
    mean: tuple[float, ...]  # per channel, [0, 1] units: input = (pixel / 255 - mean) / std
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    eval_crop: float = Field(1.0, gt=0, le=1)  # evaluation: the centre square of this fraction of the shorter side
    dataset: str = Field("", max_length=MAX_TEXT)
    split: dict[str, Union[int, float, str, None]] = Field(default_factory=dict)

    @field_validator("mean", "std", mode="before")
    @classmethod
    def _list(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v  # written as lists; strict mode wants the tuple

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("arch")
    @classmethod
    def _arch(cls, v: str) -> str:
        from mnas.space.arch import Architecture

        Architecture.parse(v)  # its own caps on widths, kernels and depth: MnasError, a ValueError
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: dict) -> dict:
        seed, holdout = v.get("seed", 0), v.get("holdout")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a count >= 0, got {seed!r}")
        if holdout is not None and (isinstance(holdout, (bool, str)) or not 0 < holdout < 2**31):
            raise ValueError(f"holdout must be a count or a fraction, got {holdout!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ModelInfo:
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean and std need one value per channel ({self.in_chans})")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be > 0")
        if self.classes and len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.num_classes} classes")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        d["mean"], d["std"], d["classes"] = list(self.mean), list(self.std), list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ModelInfo:
        return validate(cls, d, "checkpoint: model_info")


class HistoryRow(_Record):
    epoch: int = Field(ge=1)
    steps: int = Field(ge=0)
    train_loss: float
    val_top1: float = Field(ge=0, le=1)
    val_loss: float
    lr: float
    seconds: float
    train_images_per_s: float


Tensors = dict[str, torch.Tensor]


class Checkpoint(_Record):
    """The whole file, checked by ``read`` before anyone uses a field of it."""

    format: str
    format_version: int = Field(ge=0)
    mnas_version: str = Field("", max_length=100)
    model_info: ModelInfo
    recipe: dict[str, Union[bool, int, float, str, None]]  # TrainConfig.model_dump(): plain values only
    epoch: int = Field(ge=0)
    total_epochs: int = Field(ge=0)
    steps: int = Field(ge=0)
    history: list[HistoryRow]
    best_top1: float = Field(ge=-1, le=1)
    best_epoch: int = Field(ge=0)
    model: Tensors = Field(min_length=1)
    ema: Optional[Tensors] = None
    ema_updates: int = Field(0, ge=0)
    optimizer: dict[str, Any]
    scaler: Optional[dict[str, Any]] = None
    rng: dict[str, Any]

    @field_validator("recipe")
    @classmethod
    def _recipe(cls, v: dict) -> dict:
        v = renamed(v, {"preset": "recipe"}, "checkpoint", warn=False)  # written before the rename
        cache = v.get("cache")
        if cache is not None and not (isinstance(cache, str) and len(cache) <= MAX_TEXT):
            raise ValueError(f"cache must be a folder name, got {type(cache).__name__}")
        return v

    @field_validator("rng")
    @classmethod
    def _rng(cls, v: dict) -> dict:
        py = v.get("python")
        if not (isinstance(v.get("torch"), torch.Tensor) and isinstance(v.get("generator"), torch.Tensor)
                and isinstance(py, (list, tuple)) and len(py) == 3 and isinstance(py[1], (list, tuple))):
            raise ValueError("the random states need 'torch', 'generator' (tensors) and 'python'")
        return v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: dict) -> dict:
        if not isinstance(v.get("state"), dict) or not isinstance(v.get("param_groups"), list):
            raise ValueError("an optimizer state needs 'state' (a dict) and 'param_groups' (a list)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Checkpoint:
        if not self.epoch <= self.total_epochs:
            raise ValueError(f"epoch {self.epoch} is past the run's {self.total_epochs} epochs")
        if len(self.history) != self.epoch or [h.epoch for h in self.history] != list(range(1, self.epoch + 1)):
            raise ValueError(f"the history does not list epochs 1 to {self.epoch}")
        if self.best_epoch > self.epoch or (self.epoch > 0) != (self.best_epoch > 0):
            raise ValueError(f"best epoch {self.best_epoch} of {self.epoch}")
        if self.history and self.steps != self.history[-1].steps:
            raise ValueError(f"{self.steps} steps, but the history ends at {self.history[-1].steps}")
        return self


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
    """The checkpoint's contents, checked against ``Checkpoint``: every field a reader uses has its type and
    a sane range. From a folder, ``prefer`` (best.pt by default): when a kill fell between the epoch's
    ``last.pt`` and ``best.pt``, the best epoch is the last one and ``last.pt`` is read in its place; a file
    named is read as it is."""
    p = resolve(path, prefer)
    blob = _checked(p, _load(p))
    if p.name != BEST or p.parent != Path(path).expanduser() or not (p.parent / LAST).is_file():
        return blob  # a file named is that file
    try:
        last = _load(p.parent / LAST)  # mmap: the header costs little, the weights are not read here
    except MnasError:
        return blob
    if isinstance(last, dict) and last.get("best_epoch") == last.get("epoch") != blob["epoch"]:
        blob = _checked(p.parent / LAST, last)
    return blob


def _load(p: Path) -> Any:
    try:
        if p.stat().st_size == 0:
            raise EOFError("the file is empty (0 bytes)")
        with warnings.catch_warnings():
            # torch warns (on stderr, before the one line below) of a pickle protocol it may not read
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            # mmap (zip files only: what torch.save writes): the weights are read when used, not here
            return torch.load(p, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(p))
    except Exception as e:  # a truncated, empty or foreign file: pickle, zip and torch errors alike
        raise MnasError(f"{p} is not a readable checkpoint ({first_line(e)}): it is damaged or was not written "
                        "by mnas; train again (mnas train ARCH --dir DIR)") from None


def _checked(p: Path, blob: Any) -> dict[str, Any]:
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise MnasError(f"{p} is not an mnas training checkpoint (mnas train ARCH --dir DIR writes them)")
    version = blob.get("format_version", 0)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise MnasError(f"{p} was written by a newer mnas ({str(blob.get('mnas_version'))[:40]}): upgrade mnas "
                        "to read it")
    try:
        checked = validate(Checkpoint, blob, str(p))
    except MnasError as e:
        msg = " ".join(str(e).split())
        raise MnasError(f"{msg[:300]}{'...' if len(msg) > 300 else ''}: the checkpoint is damaged or was not "
                        "written by mnas train; train again (mnas train ARCH --dir DIR)") from None
    return {**blob, "model_info": checked.model_info.to_dict(), "recipe": checked.recipe,
            "history": [h.model_dump() for h in checked.history], "path": str(p)}


def first_line(e: BaseException) -> str:
    """``Type: first line of the message`` (an empty message is common: a 0-byte file's EOFError)."""
    text = (str(e).strip().splitlines() or [""])[0][:120]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def info(blob: dict[str, Any]) -> ModelInfo:
    return ModelInfo.from_dict(blob["model_info"])


def recorded_dataset(blob: dict[str, Any]) -> str:
    """The dataset spec the checkpoint recorded, once it is safe to load: a path in it must exist and lie
    outside the kernel's virtual file systems (a crafted ``imagefolder:/proc/self`` would be walked without
    end). A spec is data here, not an instruction to read whatever it names."""
    spec, where = info(blob).dataset, blob.get("path", "the checkpoint")
    if not spec:
        raise MnasError(f"{where} does not record its dataset: pass --dataset SPEC, or --no-verify")
    _, sep, path = spec.partition(":")
    if sep and path:
        if "\0" in path:
            raise MnasError(f"{where} records a dataset path with a NUL byte: pass --dataset SPEC, or --no-verify")
        real = os.path.realpath(os.path.expanduser(path))
        if in_virtual_fs(real):
            raise MnasError(f"{where} records dataset {spec[:120]!r}, a path in a kernel file system, not data: "
                            "pass --dataset SPEC, or --no-verify")
        if not os.path.exists(real):
            raise MnasError(f"cannot load {spec[:200]}, the validation data of {where} (no such file or folder): "
                            "pass --dataset SPEC where it is now, or --no-verify")
    return spec


def in_virtual_fs(path: str) -> bool:
    """Whether ``path`` (symbolic links followed) lies in /proc, /sys or /dev, or on the file system of
    /proc or /sys (mounted elsewhere)."""
    real = os.path.realpath(os.path.expanduser(path))
    if any(real == v or real.startswith(v + "/") for v in VIRTUAL_FS):
        return True
    try:
        dev = os.stat(real).st_dev
        return any(os.path.isdir(v) and os.stat(v).st_dev == dev for v in VIRTUAL_FS[:2])
    except OSError:
        return False


def write(path: Path, blob: dict[str, Any]) -> None:
    """Write ``blob`` to ``path`` so that a kill at any moment leaves the old file or the new one, never half
    (``mnas.fileio.atomic_write``); a full disk (or any OSError) leaves the old one too, and is one MnasError
    line."""
    content = {"format": FORMAT, "format_version": FORMAT_VERSION, "mnas_version": __version__, **blob}
    try:
        atomic_write(path, lambda f: torch.save(content, f))
    except BaseException as e:
        if isinstance(e, OSError) or isinstance(e.__cause__, OSError) or "write" in type(e).__name__.lower():
            raise _write_error(path, e) from None
        raise


def _write_error(path: Path, e: BaseException) -> MnasError:
    return MnasError(f"cannot write {path} ({first_line(e)}); the previous checkpoint is kept: free space or "
                     "fix the folder, then continue with --resume")


def weights(blob: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate and ship: the EMA's when the recipe kept one, else the model's."""
    return blob.get("ema") or blob["model"]


def load_model(blob: dict[str, Any]) -> nn.Module:
    """The checkpoint's network, built from its own metadata, its weights loaded, in eval mode. The network
    is first built without memory (the meta device) and its shapes compared with the weights', so a crafted
    architecture asks for no more memory than the file's own tensors take."""
    from mnas.model import build
    from mnas.space.arch import Architecture

    meta, where = info(blob), blob.get("path", "the checkpoint")
    arch, state = Architecture.parse(meta.arch), weights(blob)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in
                  build(arch, num_classes=meta.num_classes, in_chans=meta.in_chans).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != got:
        diff = sorted(shapes.keys() ^ got.keys()) or sorted(k for k in shapes if shapes[k] != got[k])
        raise MnasError(f"{where}: its weights do not fit its architecture ({len(diff)} tensor(s) differ, e.g. "
                        f"{diff[0][:80]}): the checkpoint is damaged; train again (mnas train ARCH --dir DIR)")
    model = build(arch, num_classes=meta.num_classes, in_chans=meta.in_chans)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise MnasError(f"{where}: its weights do not fit its architecture ({first_line(e)})") from None
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
