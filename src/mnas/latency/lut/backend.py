"""``lut:PATH``: a latency table as a backend. ``measure`` predicts instead of timing, and says so
(``extra["predicted"]``). It refuses settings and architectures the table was not built for; an entry the
table lacks is measured on the table's own backend and device (and saved), or refused with
``lut:PATH?missing=refuse``; it is never guessed.

Speed factor: a table holds the machine's speed of the hour it was built, and a machine's speed drifts by
more than the ±10 % a table aims at. So the first prediction in a process (a search's start) times the
table's reference models again on its real backend, and every prediction is scaled by the median ratio
now/at build; the references are timed again after ``every`` predictions or ``minutes`` minutes, whichever
comes first. Each result records the factor, when it was measured and the unscaled figure. Where the
references cannot be timed (a table built on another machine, one without calibration models, or
``speed=off``) the prediction is the table's own figure, flagged (``extra["speed_scaled"]`` false, with
``speed_note`` saying why). Options: ``lut:PATH?speed=on|off&every=N&minutes=M&missing=measure|refuse``;
``speed=hold`` (a search's latency screens, ``hold_speed``) uses the factor in force without counting;
``references=N|all``: how many calibration networks the factor times (default 10; ``all`` times every one,
as the build did: better on two tables, worse on two others, docs/results/2026-12-07-lut-start-factor.md).

LAT/T (``measure_relative``, what a search's reward reads): with ``target=measure`` T's model is timed for
real on the table's backend, once per process, in the same rounds as the references, and each candidate's
ratio is its unscaled prediction over T's figure brought back to the table's speed (T timed / the factor
of that timing); with ``target=predict`` T is predicted like any candidate, so T's own prediction error
shifts every ratio alike (docs/results/2026-12-07-lut-calibration-size.md: 56 % within ±10 % on a table
whose milliseconds reached 95 %). Either way the ratio does not move when the factor is re-timed later.
Where the references cannot be timed (``speed=off``, another machine's table) T is predicted, flagged."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnas import MnasError
from mnas.latency.base import LatencyResult, now_iso
from mnas.latency.lut.build import measure_missing
from mnas.latency.lut.layers import check_in_space
from mnas.latency.lut.speed import REFERENCES, time_references, unavailable
from mnas.latency.lut.table import LatencyTable
from mnas.latency.settings import LatencySettings

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.arch import Architecture

log = logging.getLogger(__name__)

MISSING = ("measure", "refuse")
# "hold": the factor in force, timed only if there is none yet in this process (or, with target=measure,
# once more if T's model has not been timed yet), and not counted towards ``every``: what a search's latency
# screens use (``hold_speed``), which predict many candidates per trial, possibly while trainings run beside
# them
SPEED_MODES = ("on", "off", "hold")
# the references are timed again after this many predictions or minutes, whichever comes first
SPEED_EVERY = 50
SPEED_MINUTES = 30.0
# a factor beyond this (or below its inverse) is applied, but said loudly
FAR_FACTOR = 1.5
# T for LAT/T: timed beside the references ("measure") or predicted by the table ("predict")
TARGET_MODES = ("measure", "predict")
TARGET = "predict"


@dataclass
class Speed:
    """The speed factor in use: None when the references cannot be timed here (``note`` says why)."""

    factor: float | None
    note: str | None
    time: str  # when the references were timed (ISO 8601 UTC)
    references: int = 0
    started: float = 0.0  # time.monotonic() then
    predictions: int = 0  # made with this factor
    timings: int = 0  # how often this process timed the references for this table
    # T's models timed beside the references, by canonical string: {"ms": as timed, "frame_ms": at the
    # table's speed (ms / that timing's factor), "time"}, or {"failed": why} (never tried again); kept for
    # the process, so LAT/T stays put
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)


# one speed factor per table file and process: a search creates a backend per trial, and the factor lasts
# across them until it is due again
_SPEEDS: dict[str, Speed] = {}


def _option(key: str, value: str, cast: type, low: float) -> Any:
    try:
        out = cast(value)
    except ValueError:
        out = None
    if out is None or not math.isfinite(out) or out < low:
        example = {"every": f"{SPEED_EVERY}", "minutes": f"{SPEED_MINUTES:g}", "references": "40 (or all)"}[key]
        raise MnasError(f"lut option {key}={value!r}: give a number of at least {low:g}, e.g. {key}={example}")
    return out


class LutBackend:
    model_format = None  # predicts architectures; there is no model file to time
    # a prediction costs less than a cache lookup, and a cached one would carry a speed factor of another hour
    cacheable = False

    @classmethod
    def from_spec(cls, arg: str) -> LutBackend:
        """``lut:PATH`` with options ``?missing=measure|refuse&speed=on|off&every=N&minutes=M&target=measure|predict
        &references=N|all``."""
        path, _, query = arg.partition("?")
        if not path:
            raise MnasError("lut backend needs a table file: lut:PATH (build one with 'mnas lut build')")
        opts: dict[str, Any] = {}
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            if key == "missing":
                opts["missing"] = value
            elif key == "speed":
                if value not in SPEED_MODES:
                    raise MnasError(f"lut option speed={value!r}: choose on, off or hold")
                opts["speed"] = value
            elif key == "references":
                opts["references"] = value if value == "all" else _option(key, value, int, 1)
            elif key == "target":
                if value not in TARGET_MODES:
                    raise MnasError(f"lut option target={value!r}: choose measure or predict")
                opts["target"] = value
            elif key == "every":
                opts["every"] = _option(key, value, int, 1)
            elif key == "minutes":
                opts["minutes"] = _option(key, value, float, 0)
            else:
                raise MnasError(f"unknown lut option {key!r}: choose from missing=measure|refuse, speed=on|off, "
                                "every=N, minutes=M, target=measure|predict, references=N|all")
        return cls(path, **opts)

    def __init__(self, table: LatencyTable | str, missing: str = "measure", speed: bool | str = "on",
                 every: int = SPEED_EVERY, minutes: float = SPEED_MINUTES, target: str = TARGET,
                 references: int | str = REFERENCES) -> None:
        if missing not in MISSING:
            raise MnasError(f"missing={missing!r}: choose measure or refuse")
        speed = {True: "on", False: "off"}.get(speed, speed)  # type: ignore[call-overload]
        if speed not in SPEED_MODES:
            raise MnasError(f"speed={speed!r}: choose on, off or hold")
        if target not in TARGET_MODES:
            raise MnasError(f"target={target!r}: choose measure or predict")
        self.target = target
        # how many calibration networks the speed factor times ("all": every one, as the build timed them)
        if references != "all" and not (isinstance(references, int) and references >= 1):
            raise MnasError(f"references={references!r}: give a number of at least 1, e.g. 40, or all")
        self.references = references
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.missing = missing
        self.speed, self.every, self.minutes = speed, every, minutes
        self.name = f"lut:{self.table.backend}"

    # --- the speed factor ---------------------------------------------------------------------------
    @property
    def _speed_key(self) -> str:
        t = self.table
        where = str(t.path.resolve()) if t.path is not None else f"memory:{id(t)}"
        return f"{where}|{t.created}|{t.space_sha}|{self.references}"

    def speed_due(self) -> bool:
        """Whether the next prediction times the references on this machine (an executor keeps trainings
        off the machine meanwhile)."""
        if self.speed == "off":
            return False
        st = _SPEEDS.get(self._speed_key)
        if st is None:
            return True
        return self.speed == "on" and st.factor is not None and (st.predictions >= self.every
                                          or time.monotonic() - st.started >= self.minutes * 60)

    def current_speed(self, reference: Architecture | None = None) -> Speed | None:
        """The factor in use, timing the references first when due; None with ``speed=off``. ``reference``:
        T's model, timed beside the references if this process has not timed it yet (``target=measure``)."""
        if self.speed == "off":
            return None
        key = self._speed_key
        old = _SPEEDS.get(key)
        want = [] if reference is None or self.target != "measure" or (
            old is not None and (old.factor is None or reference.canonical in old.targets)) else [reference]
        if old is not None and not self.speed_due() and not want:
            return old
        timings = (old.timings if old else 0) + 1
        targets = dict(old.targets) if old else {}
        why = unavailable(self.table)
        if why is None:
            try:
                try:
                    r = time_references(self.table, n=self._references(), also=want)
                except MnasError as e:
                    if not want:
                        raise
                    log.warning("T's model %s could not be timed on %s (%s): LAT/T divides by T's prediction",
                                want[0].canonical, self.table.backend, e)
                    targets[want[0].canonical] = {"failed": f"T's model could not be timed here ({e}): its "
                                                            "prediction is used"}
                    want = []
                    r = time_references(self.table, n=self._references())
            except MnasError as e:
                why = f"the table's reference models could not be timed here ({e}): predictions are not rescaled"
            else:
                for arch, ms in zip(want, r.get("also_ms", [])):
                    targets[arch.canonical] = {"ms": ms, "frame_ms": ms / r["factor"], "time": r["time"]}
                st = Speed(r["factor"], None, r["time"], r["references"], time.monotonic(), 0, timings, targets)
                far = not 1 / FAR_FACTOR <= st.factor <= FAR_FACTOR
                (log.warning if far else log.info)(
                    "%s: speed factor %.3f from %d reference models%s", self.table.path, st.factor, st.references,
                    ": far from 1, the machine is busy or not the one of the build; rebuild the table on a quiet "
                    "machine ('mnas lut build' refits on a complete table)" if far else "")
        if why is not None:
            log.warning("%s: %s", self.table.path or "latency table", why)
            st = Speed(None, why, now_iso(), 0, time.monotonic(), 0, timings, targets)
        _SPEEDS[key] = st
        return st

    def _references(self) -> int:
        if self.references == "all":
            return len((self.table.calibration or {}).get("samples", []))
        return int(self.references)

    def identity(self, settings: LatencySettings) -> dict[str, Any]:
        # the table file's content decides the numbers: a rebuilt table must not reuse cached predictions
        t = self.table
        return {"backend": self.name, "runtime_version": t.runtime_version, "device": t.device.get("id", ""),
                "table": f"{t.space_sha}:{len(t.entries)}:{t.created}:{t.calibration_applied}"}

    def _settings(self, settings: LatencySettings | None) -> LatencySettings:
        if settings is None:
            return self.table.settings
        self.table.check(settings=settings)
        return settings

    def fill_missing(self, arch: Architecture) -> int:
        """Measure the entries ``arch`` needs and the table lacks; returns how many."""
        missing = self.table.missing(arch)
        if not missing:
            return 0
        keys = ", ".join(s.key for s in missing[:3]) + (" ..." if len(missing) > 3 else "")
        if self.missing == "refuse":
            raise MnasError(f"the table lacks {len(missing)} layer configuration(s) ({keys}); finish it with "
                            "'mnas lut build' or allow on-demand measuring (lut:PATH?missing=measure)")
        for key, entry in measure_missing(self.table, missing).items():
            self.table.entries[key] = {**entry, "on_demand": True}
        if self.table.path is not None:
            self.table.save()
        return len(missing)

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        return self._predict(arch, settings)[0]

    def _predict(self, arch: Architecture, settings: LatencySettings | None,
                 reference: Architecture | None = None) -> tuple[LatencyResult, Speed | None]:
        settings = self._settings(settings)
        check_in_space(self.table.space, arch)
        filled = self.fill_missing(arch)
        speed = self.current_speed(reference)
        t0 = time.perf_counter()
        unscaled = self.table.predict(arch, check_space=False)
        spent = (time.perf_counter() - t0) * 1e3
        t = self.table
        if speed is not None and self.speed == "on":
            speed.predictions += 1
        factor = speed.factor if speed is not None else None
        ms = unscaled * factor if factor else unscaled
        return LatencyResult(median_ms=ms, mean_ms=ms, p10_ms=ms, p90_ms=ms, std_ms=0.0, cv=0.0, runs=0, warmup=0,
                             batch=settings.batch, resolution=settings.resolution, threads=settings.threads,
                             backend=self.name, runtime_version=t.runtime_version, device=t.device, time=now_iso(),
                             input_shape=settings.input_shape(), arch=arch.canonical,
                             extra={"predicted": True, "table": str(t.path or ""), "calibrated": t.calibration_applied,
                                    "measured_on_demand": filled, "predict_ms": spent,
                                    "unscaled_ms": unscaled, "speed_scaled": bool(factor), "speed_factor": factor,
                                    "speed_time": speed.time if speed else None,
                                    "speed_references": speed.references if speed else 0,
                                    "speed_note": speed.note if speed else "speed=off: the table's own figure"}
                             ), speed

    def measure_relative(self, arch: Architecture, reference: Architecture,
                         settings: LatencySettings | None = None) -> LatencyResult:
        """``measure(arch)`` with ``extra["relative"]``: the unscaled prediction over T at the table's speed,
        T timed beside the references once per process (``target=measure``) or predicted; either way fixed
        for the process, so that LAT/T does not move with the speed factor re-timed during a search."""
        r, speed = self._predict(arch, settings, reference)
        timed = speed.targets.get(reference.canonical) if speed is not None and self.target == "measure" else None
        if timed is not None and "frame_ms" in timed:
            r.extra["relative"] = {"reference": reference.canonical, "reference_ms": timed["frame_ms"],
                                   "ratio": r.extra["unscaled_ms"] / timed["frame_ms"], "predicted": True,
                                   "target": "measured", "target_timed_ms": timed["ms"],
                                   "target_time": timed["time"]}
            return r
        ref = self.table.predict(reference, check_space=False)
        r.extra["relative"] = {"reference": reference.canonical, "reference_ms": ref,
                               "ratio": r.extra["unscaled_ms"] / ref, "predicted": True, "target": "predicted"}
        if self.target == "measure":
            r.extra["relative"]["target_note"] = (
                timed["failed"] if timed is not None else speed.note if speed is not None and speed.note else
                "speed=off: T is not timed here, its prediction is used")
        return r

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        raise MnasError("a latency table predicts architectures of its space; time arbitrary modules on a real "
                        f"backend ({self.table.backend})")

    def measure_file(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        raise MnasError(f"a latency table predicts architectures; time model files on a real backend "
                        f"({self.table.backend})")


def hold_speed(spec: str) -> str:
    """``spec`` for a latency screen: a ``lut:`` spec with ``speed=hold`` (any other spec as it is)."""
    if spec.partition(":")[0].strip().lower() != "lut" or "speed=off" in spec:
        return spec
    return f"{spec}{'&' if '?' in spec else '?'}speed=hold"
