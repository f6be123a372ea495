"""The numbers of a report: counts, ranking by reward, top architectures, Pareto front, best under targets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mnas import __version__
from mnas.report.pareto import best_under, pareto_front
from mnas.report.story import reference_rows, references_scored, versus_reference
from mnas.store import TrialStatus
from mnas.store.query import TrialTable, best_trial, trial_table
from mnas.store.sqlite import Store

TARGET_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def open_store(directory: str | Path) -> Store:
    """Reports only read: the store opens read-only (no lock, no writes, fine on a read-only mount)."""
    return Store(directory, readonly=True)


def search_info(store: Store) -> dict[str, Any]:
    """Reward parameters and latency backend/settings recorded by the search (None where absent)."""
    meta = store.meta()
    config, latency = meta.config, meta.latency
    reward = dict(meta.reward or config.get("reward") or {})
    target = meta.target_ms if meta.target_ms is not None else reward.get("target_ms")
    return {"target_ms": float(target) if target is not None else None,
            "alpha": reward.get("alpha"), "beta": reward.get("beta"),
            "backend": latency.get("backend"), "latency_settings": latency.get("settings") or {},
            "strategy": (config.get("strategy") or {}).get("name") if isinstance(config.get("strategy"), dict)
            else config.get("strategy")}


def unique_by_arch(table: TrialTable, order: np.ndarray) -> np.ndarray:
    """Keep the first trial of each architecture in ``order`` (a search may re-sample an architecture)."""
    seen: set[str] = set()
    keep = []
    for i in order.tolist():
        a = table.arch[i]
        if a not in seen:
            seen.add(a)
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def latency_targets(table: TrialTable, target_ms: float | None, extra: list[float] | None = None) -> list[float]:
    if extra:
        return sorted(float(t) for t in extra)
    if target_ms:
        return [round(target_ms * f, 4) for f in TARGET_FACTORS]
    lat = table.latency_ms[table.completed]
    if lat.size == 0:
        return []
    return sorted({round(float(q), 4) for q in np.quantile(lat, [0.1, 0.25, 0.5, 0.75, 0.9])})


def caption(store: Store) -> dict[str, Any]:
    """What a figure needs beside it to be read: where and how latency was measured, on what data the
    proxy trained, when, with which mnas."""
    meta = store.meta()
    latency, created = meta.latency, meta.created
    settings = latency.get("settings") or {}
    proxy = meta.config.get("proxy") or {}
    best = best_trial(store)
    measured = (best.latency if best else None) or {}
    return {"backend": latency.get("backend"), "runtime_version": measured.get("runtime_version"),
            "device": (measured.get("device") or {}).get("cpu"), "threads": settings.get("threads"),
            "batch": settings.get("batch"), "resolution": settings.get("resolution"),
            "dataset": proxy.get("dataset"),
            "proxy_recipe": proxy.get("recipe", proxy.get("preset")),  # "preset" in stores written before the rename
            "proxy_resolution": proxy.get("resolution"), "proxy_epochs": proxy.get("epochs"),
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(created)) if created else None,
            "mnas_version": __version__}


def caption_text(c: dict[str, Any]) -> str:
    """One line for a figure: "onnxruntime 1.22 on <cpu>, 1 thread, batch 1, 224 px; proxy digits ..."."""
    lat = f"{c['backend']} {c['runtime_version'] or ''}".strip() + (f" on {c['device']}" if c["device"] else "")
    return (f"latency: {lat}, {c['threads']} thread(s), batch {c['batch']}, {c['resolution']} px; proxy: "
            f"{c['dataset']} at {c['proxy_resolution']} px, {c['proxy_epochs']} epoch(s), recipe {c['proxy_recipe']}; "
            f"{c['created'] or 'undated'}; mnas {c['mnas_version']}")


def summarize(store: Store, table: TrialTable | None = None, top: int = 10,
              targets: list[float] | None = None) -> dict[str, Any]:
    table = table if table is not None else trial_table(store)
    info = search_info(store)
    order = table.ranking()
    rank_of = {int(i): r + 1 for r, i in enumerate(order.tolist())}

    def row(i: int) -> dict[str, Any]:
        return {"rank": rank_of.get(int(i)), **table.row(int(i))}

    done = np.flatnonzero(table.completed)
    latency = table.best_latency()  # re-timed where a trial was (issue 32)
    front = done[pareto_front(latency[done], table.accuracy[done])]
    best_targets = []
    for t in latency_targets(table, info["target_ms"], targets):
        j = best_under(latency[done], table.accuracy[done], t)
        best_targets.append({"target_ms": t, "best": row(done[j]) if j is not None else None})
    failed = table.has_status(TrialStatus.FAILED)
    errors: dict[str, int] = {}
    for i in np.flatnonzero(failed).tolist():
        msg = (table.error[i] or "unknown error").strip().splitlines()[0][:160] if table.error[i] else "unknown error"
        errors[msg] = errors.get(msg, 0) + 1
    return {
        "dir": str(store.dir), **info, "caption": caption(store),
        "trials": len(table), "completed": int(table.has_status(TrialStatus.COMPLETED).sum()),
        "failed": int(failed.sum()), "running": int(table.has_status(TrialStatus.RUNNING).sum()),
        "pruned": int(table.has_status(TrialStatus.PRUNED).sum()),
        "unique_architectures": len(set(table.arch[i] for i in done.tolist())),
        "best": row(order[0]) if order.size else None,
        "top": [row(i) for i in unique_by_arch(table, order)[:top]],
        "pareto": [row(i) for i in front],
        "targets": best_targets,
        "errors": [{"error": k, "count": v} for k, v in sorted(errors.items(), key=lambda kv: -kv[1])],
        "timed_beside_target": int(np.isfinite(table.latency_ratio).sum()) if table.latency_ratio is not None else 0,
        "retimed": retimed_info(store, table),
        **reference_summary(store, row(order[0]) if order.size else None),
    }


def retimed_info(store: Store, table: TrialTable) -> dict[str, Any] | None:
    """How the re-timed figures were taken (None when no trial was re-timed): how many trials, how many
    timings, beside T's model or not, and the machine's load during them."""
    if table.retimed_ms is None or not np.isfinite(table.retimed_ms).any():
        return None
    runs = [r for t in store.select_trials("WHERE retimed IS NOT NULL") for r in t.retimed or []]
    loads = [x for r in runs for x in r.get("load") or []]
    beside_t = bool(runs) and all(r.get("ratio") is not None for r in runs)
    return {"trials": int(np.isfinite(table.retimed_ms).sum()), "timings": len(runs), "beside_target": beside_t,
            "load": [min(loads), max(loads)] if loads else None,
            "label": "re-timed after the search" + (", interleaved with T's model (ratio x stored T)" if beside_t
                                                     else "") + "; the front and the targets use these figures"}


def reference_summary(store: Store, best: dict[str, Any] | None) -> dict[str, Any]:
    """The reference models (scored on the proxy where the search did, ``references.score``) and the winner
    against MobileNetV2 at equal latency (``mnas.report.story``)."""
    meta = store.meta()
    refs = reference_rows(meta.references)
    return {"references": refs, "references_scored": references_scored(refs),
            "versus": versus_reference(best, refs, meta.reward or {})}
