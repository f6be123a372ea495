"""A latency lookup table: one measured entry per distinct layer configuration of a space, a per-model
overhead, and an optional linear correction fitted on whole-model measurements.

Prediction = sum of the architecture's entries + overhead, then ``coef . features`` when calibrated.
The file records what the table is valid for (space YAML and its hash, backend, runtime version,
settings, device); ``check`` refuses any other use with one line saying what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mnas import MnasError
from mnas.fileio import atomic_write
from mnas.latency.settings import LatencySettings
from mnas.latency.lut.layers import LayerSpec, arch_layers, check_in_space, space_layers
from mnas.schema import validate

if TYPE_CHECKING:
    from mnas.space.arch import Architecture
    from mnas.space.mnasnet import MnasNetSpace

FORMAT = "mnas-lut/1"
# settings that change what a layer costs; a table answers only for these exact values
# ("quantize": the int8 setting of newer mnas versions; a version without it reads None on both sides)
MATCH_FIELDS = ("resolution", "batch", "threads", "in_chans", "num_classes", "quantize")
CLI_OPTIONS = ("resolution", "batch", "threads", "num_classes")  # options of 'mnas lut build'; others: --set
FEATURES = ("sum_ms", "se_big_ms", "layers", "const")
# squeeze-excite on an expanded tensor this large: onnxruntime computes the SE's mean and product in plain
# NCHW, so inside a network the tensor is reordered out of the blocked layout and back, and those layers
# cost about a quarter more than their fastest isolated call (docs/latency-lut.md); a feature of its own
SE_BIG_BYTES = 4_000_000
# the thresholds a calibration chooses among, on its own calibration networks only (never on an eval's):
# SE_BIG_BYTES first, so that it wins a tie; a table calibrated before this stores none and uses SE_BIG_BYTES
SE_BIG_CHOICES = (SE_BIG_BYTES, 1_000_000, 2_000_000, 8_000_000, 16_000_000)


class _Loose(BaseModel):
    # keys written by other mnas versions are ignored; numbers must be finite
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class _Entry(_Loose):
    ms: float = Field(ge=0)


class _Calibration(_Loose):
    features: list[Literal[FEATURES]]
    coef: list[float]

    @model_validator(mode="after")
    def _one_coef_per_feature(self) -> _Calibration:
        if len(self.features) != len(self.coef):
            raise ValueError("needs one coefficient per feature")
        return self


class _Space(_Loose):
    yaml: str


class TableFile(_Loose):
    """What ``LatencyTable.load`` accepts: a damaged or hand-edited table is one line naming the field."""

    format: Literal[FORMAT]
    space: _Space
    backend: str
    settings: dict[str, Any]
    entries: dict[str, _Entry]
    runtime_version: str = ""
    device: dict[str, Any] = {}
    overhead_ms: float = 0.0
    calibration: Optional[_Calibration] = None
    expected_entries: int = Field(0, ge=0)
    entry_runs: int = Field(10, ge=1)
    clock: Literal["wall", "cpu"] = "wall"
    entry_method: str = "sequential"  # tables without the field predate interleaved entries
    build_seconds: float = 0.0
    created: str = ""


def space_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_space_text(text: str) -> MnasNetSpace:
    from mnas.space.mnasnet import MnasNetSpace

    # MnasNetSpace.load reads a path; the table carries the YAML itself so it stays valid when files move
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        return MnasNetSpace.load(f.name)
    finally:
        os.unlink(f.name)


@dataclass
class LatencyTable:
    space_yaml: str
    backend: str
    settings: LatencySettings
    runtime_version: str = ""
    device: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"ms", "raw_ms", "io_ms", ...}
    overhead_ms: float = 0.0
    calibration: dict[str, Any] | None = None  # {"features", "coef", "n", "fit": {...}}
    expected: int = 0  # how many entries the space needs
    entry_runs: int = 10  # timed runs per entry (whole models use settings.runs)
    clock: str = "wall"  # "wall", or "cpu": the calling thread's CPU time (build and eval alike)
    entry_method: str = "sequential"  # how entries were timed (mnas.latency.lut.build.ENTRY_METHOD)
    build_seconds: float = 0.0
    created: str = ""
    path: Path | None = None
    _space: Any = field(default=None, repr=False, compare=False)

    # --- identity ---------------------------------------------------------------------------------
    @property
    def space_sha(self) -> str:
        return space_hash(self.space_yaml)

    @property
    def space(self) -> MnasNetSpace:
        if self._space is None:
            self._space = load_space_text(self.space_yaml)
        return self._space

    @property
    def complete(self) -> bool:
        return self.expected > 0 and len(self.entries) >= self.expected

    def check(self, settings: LatencySettings | None = None, backend: str | None = None,
              space_yaml: str | None = None) -> None:
        """Refuse (MnasError) a use the table was not built for."""
        where = f"table {self.path or ''} was built".replace("  ", " ")
        if settings is not None:
            for name in MATCH_FIELDS:
                mine, theirs = getattr(self.settings, name, None), getattr(settings, name, None)
                if mine != theirs:
                    option = (f"--{name.replace('_', '-')} {theirs}" if name in CLI_OPTIONS
                              else f"--set {name}={theirs}")
                    raise MnasError(f"{where} for {name}={mine}, asked for {name}={theirs}: build a table "
                                    f"with 'mnas lut build {option}'")
        if backend is not None and backend.split(":")[0].lower() not in (self.backend, "lut"):
            raise MnasError(f"{where} on backend {self.backend!r}, asked for {backend!r}: build one on that "
                            "backend")
        if space_yaml is not None and space_hash(space_yaml) != self.space_sha:
            raise MnasError(f"{where} for another space (space hash {self.space_sha}, given "
                            f"{space_hash(space_yaml)}): build a table for this space")

    # --- prediction -------------------------------------------------------------------------------
    def layers(self, arch: Architecture) -> list[LayerSpec]:
        s = self.settings
        return arch_layers(arch, s.resolution, s.in_chans, s.num_classes)

    def missing(self, arch: Architecture) -> list[LayerSpec]:
        return [spec for spec in self.layers(arch) if spec.key not in self.entries]

    def coverage(self) -> tuple[int, int]:
        """(entries the table holds, entries its space needs), counted from the space itself rather than
        from the file's ``expected_entries``, which a hand-edited or older file may get wrong."""
        s = self.settings
        needed = {spec.key for spec in space_layers(self.space, s.resolution, s.in_chans, s.num_classes)}
        return len(needed & self.entries.keys()), len(needed)

    @property
    def calibration_applied(self) -> bool:
        """A correction that lost to the plain sum on models it was not fitted on is stored, not used
        (tables older than that check have no "applied" and use theirs)."""
        return bool(self.calibration) and self.calibration.get("applied", True)

    @property
    def se_big_bytes(self) -> int:
        """The ``se_big`` threshold: the one the calibration chose on its networks, else SE_BIG_BYTES."""
        return int((self.calibration or {}).get("se_big_bytes") or SE_BIG_BYTES)

    def features(self, arch: Architecture, layers: list[LayerSpec] | None = None,
                 se_big_bytes: int | None = None) -> dict[str, float]:
        layers = self.layers(arch) if layers is None else layers
        threshold = self.se_big_bytes if se_big_bytes is None else se_big_bytes
        try:
            total = sum(self.entries[spec.key]["ms"] for spec in layers)
        except KeyError as e:
            raise MnasError(f"the table has no entry {e.args[0]}: measure it (on-demand) or rebuild the "
                            "table") from None
        se_big = sum(self.entries[spec.key]["ms"] for spec in layers if spec.kind == "layer" and spec.se > 0
                     and 4 * spec.in_ch * spec.expansion * spec.res * spec.res >= threshold)
        return {"sum_ms": total + self.overhead_ms, "se_big_ms": se_big, "layers": float(len(layers)), "const": 1.0}

    def predict(self, arch: Architecture, calibrated: bool = True, check_space: bool = True) -> float:
        if check_space:
            check_in_space(self.space, arch)
        f = self.features(arch)
        if calibrated and self.calibration_applied:
            return float(sum(c * f[name] for name, c in zip(self.calibration["features"], self.calibration["coef"])))
        return f["sum_ms"]

    # --- file ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "space": {"sha": self.space_sha, "name": self.space.name, "yaml": self.space_yaml},
                "backend": self.backend, "runtime_version": self.runtime_version, "device": self.device,
                "settings": self.settings.to_dict(), "expected_entries": self.expected, "entry_runs": self.entry_runs,
                "clock": self.clock, "entry_method": self.entry_method,
                "complete": self.complete, "overhead_ms": self.overhead_ms, "calibration": self.calibration,
                "build_seconds": round(self.build_seconds, 1), "created": self.created,
                "entries": self.entries}

    def save(self, path: str | Path | None = None) -> Path:
        """Atomic write, so an interrupted build or a concurrent reader never sees half a file."""
        path = Path(path or self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(self.to_dict(), indent=1, sort_keys=True))
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MnasError(f"latency table {path} does not exist: build it with 'mnas lut build'") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MnasError(f"{path} is not a latency table (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MnasError(f"{path} is not a latency table (format {FORMAT!r} expected)")
        f = validate(TableFile, data, f"latency table {path}")
        return cls(space_yaml=f.space.yaml, backend=f.backend,
                   settings=LatencySettings.from_dict(f.settings), runtime_version=f.runtime_version,
                   device=f.device, entries={k: e.model_dump() for k, e in f.entries.items()},
                   overhead_ms=f.overhead_ms, calibration=f.calibration.model_dump() if f.calibration else None,
                   expected=f.expected_entries, entry_runs=f.entry_runs,
                   clock=f.clock, entry_method=f.entry_method, build_seconds=f.build_seconds, created=f.created, path=path)
