"""Reference models timed on the search's own backend at its start, so a report can draw the searched models
against MobileNetV2 at several widths and the published MnasNets on the same device (their proxy accuracy is
unknown until `mnas retrain` trains them on the same task; until then they are marks on the latency axis)."""

from __future__ import annotations

import logging
from typing import Any

from mnas.run import LatencyJob
from mnas.run.trial import measure_latency

log = logging.getLogger(__name__)

# name -> (zoo model, width multiplier): the curve the paper's Table 1 compares against
REFERENCES: dict[str, tuple[str, float]] = {
    "mobilenet-v2 0.5": ("mobilenet-v2", 0.5),
    "mobilenet-v2 0.75": ("mobilenet-v2", 0.75),
    "mobilenet-v2 1.0": ("mobilenet-v2", 1.0),
    "mobilenet-v2 1.4": ("mobilenet-v2", 1.4),
    "mnasnet-a1": ("mnasnet-a1", 1.0),
    "mnasnet-b1": ("mnasnet-b1", 1.0),
}
# the same curve adapted to 32-px inputs (stride-1 stem, total stride 8), for a space with a stride-1 stem
# such as mnasnet-cifar: the networks a CIFAR user would deploy, timed as the search's trials are
CIFAR_REFERENCES: dict[str, tuple[str, float]] = {
    "mobilenet-v2-cifar 0.5": ("mobilenet-v2-cifar", 0.5),
    "mobilenet-v2-cifar 0.75": ("mobilenet-v2-cifar", 0.75),
    "mobilenet-v2-cifar 1.0": ("mobilenet-v2-cifar", 1.0),
    "mobilenet-v2-cifar 1.4": ("mobilenet-v2-cifar", 1.4),
    "mnasnet-a1-cifar": ("mnasnet-a1-cifar", 1.0),
}


def references_for(space: object) -> dict[str, tuple[str, float]]:
    """The reference models that match the space's stem: the CIFAR variants for a stride-1 stem."""
    return CIFAR_REFERENCES if getattr(space, "stem_stride", 2) == 1 else REFERENCES


def measure_references(job: LatencyJob, references: dict[str, tuple[str, float]] | None = None
                       ) -> list[dict[str, Any]]:
    """[{"name", "arch", "latency_ms", "params", "macs"}] for each reference (default: ``REFERENCES``); one
    that fails is left out (with a warning): references decorate a report, they never stop a search."""
    from mnas.space import resolve_arch

    out = []
    for name, (model, width) in (REFERENCES if references is None else references).items():
        _, arch = resolve_arch(model, width)
        try:
            m = measure_latency(arch.canonical, job)
        except Exception as e:  # noqa: BLE001 - e.g. a remote device that is down: the search goes on
            log.warning("reference %s not measured: %s", name, e)
            continue
        out.append({"name": name, "arch": arch.canonical, "latency_ms": m.latency_ms, "params": m.params,
                    "macs": m.macs})
    return out
