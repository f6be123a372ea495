"""Reference models timed on the search's own backend at its start, so a report can draw the searched models
against MobileNetV2 at several widths and the published MnasNets on the same device. With
``references.score`` each is also trained with the search's own proxy training (``score_references``), so
the report draws it as a point with an accuracy and a reward; without, it is a mark on the latency axis
until `mnas retrain` trains it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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
        out.append({"name": name, "model": model, "width": width, "arch": arch.canonical,
                    "latency_ms": m.latency_ms, "params": m.params, "macs": m.macs})
    return out


def unscored(refs: list[dict[str, Any]]) -> list[int]:
    """The indices of the references not yet scored (neither an accuracy nor a failed training)."""
    return [i for i, r in enumerate(refs) if r.get("accuracy") is None and not r.get("error")]


def score_reference(ref: dict[str, Any], proxy: Any, seed: int, reward_cfg: Any) -> dict[str, Any]:
    """``ref`` (one of ``measure_references``) trained as a trial is, on the search's ``proxy`` task with its
    ``seed``, and rewarded by the same ``reward_cfg``: a copy with "accuracy", "reward", "seconds" (of the
    training) and "kind": "reference"; a failed training gives "error" instead (the search goes on)."""
    from mnas.run.trial import error_line, train_proxy_job
    from mnas.search.reward import reward

    t0 = time.monotonic()
    out = {**ref, "kind": "reference", "accuracy": None, "reward": None}
    try:
        r = train_proxy_job(ref["arch"], proxy, seed)
        if r.get("status", "ok") != "ok":
            raise RuntimeError(r.get("error") or "training failed")
        out["accuracy"] = float(r["top1"])
        out["reward"] = reward(out["accuracy"], ref["latency_ms"], reward_cfg, ref.get("params"), ref.get("macs"))
    except Exception as e:  # noqa: BLE001 - a reference decorates the report; it never stops the search
        log.warning("reference %s not scored: %s", ref["name"], error_line(e))
        out["error"] = error_line(e)
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def score_references(refs: list[dict[str, Any]], proxy: Any, seed: int, reward_cfg: Any,
                     save: Callable[[list[dict[str, Any]]], None],
                     announce: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Score each reference of ``refs`` not scored yet (``score_reference``), calling ``save`` with the whole
    list after each one, so a search stopped half-way keeps what was scored and a resume does the rest."""
    refs = [dict(r) for r in refs]
    todo = unscored(refs)
    for n, i in enumerate(todo, 1):
        line = f"scoring reference {refs[i]['name']} on the proxy ({n}/{len(todo)}, outside the trial budget)"
        log.info(line)
        if announce is not None:
            announce(line)
        refs[i] = score_reference(refs[i], proxy, seed, reward_cfg)
        save(refs)
    return refs
