"""The latency contract: what a measurement returns and what every backend offers.

A backend says what it can do on the protocol itself: ``model_format`` is the model file it takes ("onnx",
"tflite", or None when it takes no files) and ``measure_file`` times such a file. Nothing here imports a
backend; ``mnas.latency.registry`` names them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import ConfigDict, TypeAdapter, ValidationError

from mnas import MnasError
from mnas.latency.settings import LatencySettings
from mnas.schema import validation_message

if TYPE_CHECKING:  # torch is heavy; only the backends need it at run time
    from torch import nn

    from mnas.space.arch import Architecture


@dataclass
class LatencyResult:
    """One measurement. Times are milliseconds per inference call (one call = one batch)."""

    # results arrive from agents and cache files: a time that is NaN or infinite is as wrong as a string
    __pydantic_config__ = ConfigDict(allow_inf_nan=False)

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    cv: float  # std / mean of the round medians: how reproducible the median is
    runs: int
    warmup: int
    batch: int
    resolution: int
    threads: int
    backend: str
    runtime_version: str
    device: dict[str, Any]  # mnas.latency.fingerprint.fingerprint(): cpu, cores, os, machine, id
    time: str  # ISO 8601 UTC, when the measurement finished
    input_shape: tuple[int, ...] = ()
    arch: str | None = None  # canonical string when an Architecture was measured
    rounds: int = 0
    round_medians_ms: list[float] = field(default_factory=list)
    sample_cv: float = 0.0  # std / mean of all timed runs (includes outliers)
    remeasures: int = 0
    cpu_min_ms: float | None = None  # the fastest timed call on the process's CPU clock (in-process backends)
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, data: Any) -> LatencyResult:
        """Validate a result from JSON (an agent's answer, a cache row): fields of the wrong type, times that
        are not finite numbers or a body that is not an object are one MnasError line; unknown keys (from
        another mnas version) are dropped."""
        if not isinstance(data, dict):
            raise MnasError(f"a latency result is a JSON object, got {type(data).__name__}")
        missing = {f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING} - data.keys()
        if missing:
            raise MnasError(f"latency result lacks field(s) {', '.join(sorted(missing))}")
        try:
            return _adapter().validate_python(data)
        except ValidationError as e:
            raise MnasError(validation_message(e, "latency result")) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@functools.cache
def _adapter() -> TypeAdapter[LatencyResult]:
    return TypeAdapter(LatencyResult)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@runtime_checkable
class LatencyBackend(Protocol):
    """A way to run a model and time it.

    ``measure`` times an architecture's network as ``mnas.model.export.prepare`` makes it (BatchNorm
    calibrated); ``measure_model`` times any module at an input shape (single layers for a lookup table);
    ``measure_file`` times a model file in ``model_format`` (MnasError when ``model_format`` is None).
    ``identity`` is what makes two results comparable (backend, runtime version, device): the cache key."""

    name: str
    model_format: str | None

    def identity(self, settings: LatencySettings) -> dict[str, Any]: ...

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult: ...

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult: ...

    def measure_file(self, data: bytes, settings: LatencySettings) -> LatencyResult: ...
