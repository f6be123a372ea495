"""``lut:PATH``: a latency table as a backend. ``measure`` predicts instead of timing, and says so
(``extra["predicted"]``). It refuses settings and architectures the table was not built for; an entry the
table lacks is measured on the table's own backend and device (and saved), or refused with
``lut:PATH?missing=refuse``; it is never guessed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from mnas import MnasError
from mnas.latency.base import LatencyResult, now_iso
from mnas.latency.fingerprint import fingerprint
from mnas.latency.lut.build import entry_settings, measure_entries
from mnas.latency.lut.layers import check_in_space
from mnas.latency.lut.table import LatencyTable
from mnas.latency.registry import get_backend
from mnas.latency.settings import LatencySettings

if TYPE_CHECKING:
    from torch import nn

    from mnas.space.arch import Architecture

MISSING = ("measure", "refuse")


class LutBackend:
    model_format = None  # predicts architectures; there is no model file to time

    @classmethod
    def from_spec(cls, arg: str) -> LutBackend:
        """``lut:PATH`` or ``lut:PATH?missing=refuse``."""
        path, _, query = arg.partition("?")
        if not path:
            raise MnasError("lut backend needs a table file: lut:PATH (build one with 'mnas lut build')")
        missing = "measure"
        for part in filter(None, query.split("&")):
            key, _, value = part.partition("=")
            if key != "missing":
                raise MnasError(f"unknown lut option {key!r}: only missing=measure|refuse")
            missing = value
        return cls(path, missing)

    def __init__(self, table: LatencyTable | str, missing: str = "measure") -> None:
        if missing not in MISSING:
            raise MnasError(f"missing={missing!r}: choose measure or refuse")
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.missing = missing
        self.name = f"lut:{self.table.backend}"

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
        if self.table.device.get("id") != fingerprint()["id"]:
            raise MnasError(f"the table lacks {keys} and was built on {self.table.device.get('cpu')!r}, not this "
                            "device: measure it there ('mnas lut build' resumes)")
        be = get_backend(self.table.backend)
        io_cache: dict = {}
        esettings = entry_settings(self.table.settings, self.table.entry_runs)
        for spec, entry in zip(missing, measure_entries(be, missing, esettings, io_cache, self.table.clock)):
            self.table.entries[spec.key] = {**entry, "on_demand": True}
        if self.table.path is not None:
            self.table.save()
        return len(missing)

    def measure(self, arch: Architecture, settings: LatencySettings | None = None) -> LatencyResult:
        settings = self._settings(settings)
        check_in_space(self.table.space, arch)
        filled = self.fill_missing(arch)
        t0 = time.perf_counter()
        ms = self.table.predict(arch, check_space=False)
        spent = (time.perf_counter() - t0) * 1e3
        t = self.table
        return LatencyResult(median_ms=ms, mean_ms=ms, p10_ms=ms, p90_ms=ms, std_ms=0.0, cv=0.0, runs=0, warmup=0,
                             batch=settings.batch, resolution=settings.resolution, threads=settings.threads,
                             backend=self.name, runtime_version=t.runtime_version, device=t.device, time=now_iso(),
                             input_shape=settings.input_shape(), arch=arch.canonical,
                             extra={"predicted": True, "table": str(t.path or ""), "calibrated": t.calibration_applied,
                                    "measured_on_demand": filled, "predict_ms": spent})

    def measure_model(self, model: nn.Module, input_shape: tuple[int, ...],
                      settings: LatencySettings | None = None) -> LatencyResult:
        raise MnasError("a latency table predicts architectures of its space; time arbitrary modules on a real "
                        f"backend ({self.table.backend})")

    def measure_file(self, data: bytes, settings: LatencySettings) -> LatencyResult:
        raise MnasError(f"a latency table predicts architectures; time model files on a real backend "
                        f"({self.table.backend})")
