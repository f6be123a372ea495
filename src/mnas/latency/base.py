"""The latency contract: settings, results, the backend protocol and the backend registry.

Every backend times a model the same way (``mnas.latency.protocol``) and returns a ``LatencyResult``
that says what was measured, how, where and when. ``get_backend("onnxruntime")`` /
``get_backend("remote:http://pi:8765")`` turn a spec string into a backend; higher layers (e.g. a
lookup table) add their own prefixes with ``register_backend`` or the ``mnas.latency_backends``
entry-point group, so this package never imports them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

from mnas import MnasError

if TYPE_CHECKING:  # torch is heavy; only the backends need it at run time
    from torch import nn

    from mnas.space.arch import Architecture


@dataclass
class LatencySettings:
    """How to measure. ``runs`` timed inferences split over ``rounds`` rounds after ``warmup`` untimed ones;
    the result is the median of the round medians. When the rounds disagree by more than ``cv_threshold``
    (coefficient of variation of the round medians) the whole measurement is repeated, at most
    ``max_remeasures`` times, and the quietest attempt is kept."""

    resolution: int = 224
    batch: int = 1
    threads: int = 1
    runs: int = 30
    warmup: int = 5
    cv_threshold: float = 0.05
    pin_core: int | None = None
    in_chans: int = 3
    num_classes: int = 1000
    rounds: int = 5
    max_remeasures: int = 2
    calibrate_bn: bool = True
    # "wall": elapsed time, what a user waits. "cpu": CPU time of this process, which leaves out the
    # time the OS gives to other programs; on a shared, loaded machine it estimates the quiet-machine
    # latency of a single-threaded run much better (it still includes cache/memory contention).
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "cpu"):
            raise MnasError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")
        if self.resolution < 1 or self.batch < 1 or self.threads < 1 or self.in_chans < 1:
            raise MnasError("resolution, batch, threads and in_chans must be >= 1")
        if self.runs < 1 or self.warmup < 0 or self.rounds < 1 or self.max_remeasures < 0:
            raise MnasError("runs and rounds must be >= 1, warmup and max_remeasures >= 0")
        if self.cv_threshold <= 0:
            raise MnasError(f"cv_threshold must be > 0, got {self.cv_threshold}")

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_chans, self.resolution, self.resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencySettings:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def key_fields(self) -> dict[str, Any]:
        """The settings that change what is timed (cache key); statistics knobs are left out on purpose
        except the run counts, so a 3-run quick look never stands in for a 30-run measurement."""
        return {"resolution": self.resolution, "batch": self.batch, "threads": self.threads,
                "in_chans": self.in_chans, "num_classes": self.num_classes, "runs": self.runs,
                "warmup": self.warmup, "rounds": self.rounds, "pin_core": self.pin_core,
                "calibrate_bn": self.calibrate_bn, "clock": self.clock}


@dataclass
class LatencyResult:
    """One measurement. Times are milliseconds per inference call (one call = one batch)."""

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
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING} - data.keys()
        if missing:
            raise MnasError(f"latency result lacks field(s) {', '.join(sorted(missing))}")
        kw = {k: v for k, v in data.items() if k in names}
        kw["input_shape"] = tuple(kw.get("input_shape", ()))
        return cls(**kw)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@runtime_checkable
class LatencyBackend(Protocol):
    """A way to run a model and time it. ``measure`` builds an architecture's network (BatchNorm
    calibrated) and times it; ``measure_model`` times any module at an input shape (single layers for a
    lookup table, for instance)."""

    name: str

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult: ...

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult: ...


# Backend registry: spec "prefix" or "prefix:argument" -> factory(argument) -> backend.
BackendFactory = Callable[[str], LatencyBackend]
BACKENDS: dict[str, BackendFactory] = {}
ENTRY_POINT_GROUP = "mnas.latency_backends"


def register_backend(prefix: str, factory: BackendFactory) -> None:
    """Add a backend kind; ``factory`` receives the text after ``prefix:`` ("" when there is none)."""
    BACKENDS[prefix] = factory


def _onnxruntime(arg: str) -> LatencyBackend:
    from mnas.latency.onnxruntime_backend import OnnxRuntimeBackend
    return OnnxRuntimeBackend()


def _torch(arg: str) -> LatencyBackend:
    from mnas.latency.torch_backend import TorchBackend
    return TorchBackend()


def _openvino(arg: str) -> LatencyBackend:
    from mnas.latency.openvino_backend import OpenVinoBackend
    return OpenVinoBackend()


def _litert(arg: str) -> LatencyBackend:
    from mnas.latency.litert_backend import LiteRtBackend
    return LiteRtBackend()


def _remote(arg: str) -> LatencyBackend:
    """``remote:URL[,URL...]``; the bearer token comes from $MNAS_DEVICE_TOKEN_FILE or $MNAS_DEVICE_TOKEN."""
    from mnas.latency.remote import RemoteBackend
    urls = [u.strip() for u in arg.split(",") if u.strip()]
    if not urls:
        raise MnasError("remote backend needs agent URLs: remote:http://HOST:PORT[,http://HOST2:PORT]")
    return RemoteBackend(urls)


def _lut(arg: str) -> LatencyBackend:
    from mnas.latency.lut.backend import lut_factory  # issue 4: lut:PATH[?missing=measure|refuse]
    return lut_factory(arg)


for _p, _f in {"onnxruntime": _onnxruntime, "ort": _onnxruntime, "torch": _torch, "openvino": _openvino,
               "litert": _litert, "tflite": _litert, "remote": _remote, "lut": _lut}.items():
    register_backend(_p, _f)

LOCAL_BACKENDS = ("onnxruntime", "torch", "openvino", "litert")


def get_backend(spec: str | LatencyBackend) -> LatencyBackend:
    """"onnxruntime", "torch", "openvino", "litert", "remote:URL[,URL...]", or any registered prefix."""
    if not isinstance(spec, str):
        return spec
    prefix, _, arg = spec.strip().partition(":")
    prefix = prefix.lower()
    if prefix not in BACKENDS:
        _load_entry_points()
    if prefix not in BACKENDS:
        raise MnasError(f"unknown latency backend {spec!r}: choose one of {', '.join(sorted(BACKENDS))}"
                        " (remote:URL[,URL] for device agents)")
    return BACKENDS[prefix](arg)


def _load_entry_points() -> None:
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BACKENDS:
            BACKENDS[ep.name] = ep.load()


def backend_identity(backend: LatencyBackend, settings: LatencySettings) -> dict[str, Any]:
    """What makes a backend's numbers comparable: its name, runtime version and the device it runs on."""
    ident = getattr(backend, "identity", None)
    if callable(ident):
        return ident(settings)
    from mnas.latency.fingerprint import fingerprint
    return {"backend": backend.name, "runtime_version": "", "device": fingerprint()["id"]}


def cache_key(arch_canonical: str, identity: dict[str, Any], settings: LatencySettings) -> str:
    blob = json.dumps({"arch": arch_canonical, "identity": identity, "settings": settings.key_fields()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def measure(arch: Architecture, backend: str | LatencyBackend = "onnxruntime",
            settings: LatencySettings | None = None, cache: Any = None) -> LatencyResult:
    """Measure an architecture's latency, reusing a cached result for the same (architecture, backend,
    settings, device). ``cache``: a ``LatencyCache``, a path to one, or None for no cache."""
    settings = settings or LatencySettings()
    be = get_backend(backend)
    if cache is None:
        return be.measure(arch, settings)
    from mnas.latency.cache import LatencyCache
    if not isinstance(cache, LatencyCache):
        cache = LatencyCache(cache)
    key = cache_key(arch.canonical, backend_identity(be, settings), settings)
    hit = cache.get(key)
    if hit is not None:
        hit.cached = True
        return hit
    result = be.measure(arch, settings)
    cache.put(key, result)
    return result
