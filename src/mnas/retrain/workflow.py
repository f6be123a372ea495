"""``mnas retrain EXPERIMENT``: train the search's best architectures and reference models in full, under one recipe,
and record each in the experiment's store (table ``retrained``), so that ``mnas report`` can draw the searched
models against the references' curve and measure how well the proxy ranked them.

Each model trains into ``EXPERIMENT/retrain/<label>-<recipe digest>/`` (mnas.train.full: a checkpoint per epoch). A
rerun skips every model already recorded as completed under the same recipe and resumes an unfinished one from
its last epoch, so after a kill -9 nothing is trained twice. Every model's latency is measured with the
search's own latency settings just before it trains, so all the figures in one table come from one session.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.run.trial import measure_latency
from mnas.retrain.config import RetrainConfig
from mnas.search.config import stored_config
from mnas.search.driver import latency_job
from mnas.store import Retrained, Store, TrialStatus
from mnas.store.lock import RETRAIN_LOCK_NAME
from mnas.space import load_space
from mnas.store.query import ranked_trials
from mnas.train.config import TrainTask
from mnas.train.full import RUNTIME_FIELDS

log = logging.getLogger(__name__)



DEFAULT_REFERENCES: tuple[str, ...] = RetrainConfig.default("references")


def references_for_space(space: str) -> tuple[str, ...]:
    """The references a search in ``space`` is compared with: the stem's own (the CIFAR variants for a
    stride-1 stem, so that a 32-px search never faces networks that reach 1x1 by their last stage)."""
    try:
        stride = getattr(load_space(space), "stem_stride", 2)
    except MnasError as e:  # a space file moved since the search: the references are only a default
        log.warning("the experiment's space %s does not load (%s): retraining the ImageNet-stem references", space, e)
        stride = 2
    return RetrainConfig.default("cifar_references" if stride == 1 else "references")
DEFAULT_RECIPE: str = RetrainConfig.default("recipe")

Event = Callable[[str, Retrained], None]  # ("start" | "done" | "skip" | "timed" | "proxy", row) for each model
StepProgress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Planned:
    """A line of ``retrain(dry_run=True)``'s plan: a model and whether it is trained already."""

    key: str
    label: str
    kind: str
    arch: str
    status: str  # a TrialStatus's value, or "to train"


@dataclass(frozen=True)
class Candidate:
    label: str
    kind: str  # trial | reference
    arch: str  # canonical, at the width it is deployed (and trained) at
    trial_id: int | None = None
    proxy_accuracy: float | None = None
    zoo: str | None = None
    width: float | None = None


def parse_reference(text: str) -> Candidate:
    """``NAME`` or ``NAME@WIDTH`` of a zoo model."""
    from mnas.registry import did_you_mean
    from mnas.space import resolve_arch, split_width, zoo

    try:
        name, given = split_width(text)
    except MnasError as e:
        raise MnasError(f"--references: {e}") from None
    name = name.lower()
    if name not in zoo.ZOO:
        raise MnasError(f"--references: {name!r} is not a zoo model{did_you_mean(name, zoo.names())} "
                        f"({', '.join(zoo.names())}); write NAME or NAME@WIDTH, e.g. mobilenet-v2@0.75")
    width = 1.0 if given is None else given
    label, arch = resolve_arch(text)
    return Candidate(label, "reference", arch.canonical, zoo=name, width=width)


def spread(store: Store, n: int) -> list[int]:
    """``n`` completed trials spanning the latency range (evenly spaced in latency order, distinct
    architectures): the set the proxy's ranking is measured on (issue 14 asks for at least 12)."""
    by_arch = {}
    for t in sorted(store.trials("completed"), key=lambda t: (t.latency_ms or 0.0, t.id)):
        by_arch.setdefault(t.arch, t)
    ordered = sorted(by_arch.values(), key=lambda t: (t.latency_ms or 0.0, t.id))
    if n >= len(ordered):
        return [t.id for t in ordered]
    return [ordered[round(k * (len(ordered) - 1) / (n - 1))].id for k in range(n)] if n > 1 else [ordered[0].id]


def candidates(store: Store, top: int, trial_ids: Sequence[int], references: Sequence[str],
               spread_n: int = 0) -> list[Candidate]:
    """The top ``top`` completed trials by reward (distinct architectures), the trials named, ``spread_n``
    trials spanning the latency range, the references."""
    trial_ids = [*trial_ids, *(spread(store, spread_n) if spread_n else [])]
    out: list[Candidate] = []
    seen: set[str] = set()

    def add_trial(t) -> None:
        if t.arch not in seen:
            seen.add(t.arch)
            out.append(Candidate(f"trial {t.id}", "trial", t.arch, t.id, t.accuracy))

    for t in ranked_trials(store):
        if len(out) >= top:
            break
        add_trial(t)
    for tid in trial_ids:
        t = store.trial(int(tid))
        if t.status != "completed":
            raise MnasError(f"trial {tid} is {t.status}, not completed: it has no proxy accuracy to compare")
        add_trial(t)
    for ref in references:
        c = parse_reference(ref)
        if c.label not in {o.label for o in out}:
            out.append(c)
    return out


def recipe_config(store: Store, recipe: str, dataset: str | None, cache: str | None,
                  overrides: dict[str, Any]) -> TrainTask:
    """The one training task every model is trained with: ``recipe`` and the overrides, on the search's dataset unless
    another is given, evaluated on the source's own test/val split (never the images the search held out)."""
    exp = stored_config(store)
    overrides = dict(overrides)
    # --set dataset=... / cache=... are the same as --dataset / --cache (they were silently replaced)
    for key, given in (("dataset", dataset), ("cache", cache)):
        if key in overrides and given is not None and overrides[key] != given:
            raise MnasError(f"--{key} {given} and --set {key}={overrides[key]} disagree: give one of them")
    dataset = dataset if dataset is not None else overrides.pop("dataset", None)
    cache = cache if cache is not None else overrides.pop("cache", None)
    overrides.pop("dataset", None), overrides.pop("cache", None)
    spec = dataset or exp.proxy.dataset
    if not isinstance(spec, str) or (cache is not None and not isinstance(cache, str)):
        raise MnasError(f"--set dataset / cache: expected a dataset SPEC and a folder (text), got {spec!r} and "
                        f"{cache!r}")
    if cache is None and spec.split(":", 1)[0] == "imagefolder":  # decode once, not every epoch
        res = overrides.get("resolution") or TrainTask(recipe=recipe).resolution
        cache = str((store.dir / "retrain" / f"data-{res}px").resolve())
    return TrainTask(**{"recipe": recipe, "seed": exp.seed, **overrides, "dataset": spec, "cache": cache})


# fields added after trainings were recorded: left out of the digest while unset, so those are found again
LATER_FIELDS = ("estimator", "init")


def recipe_digest(cfg: TrainTask) -> str:
    """What makes two trainings the same training: the recipe and the data, not threads or devices."""
    # the recipe's name is hashed under its old key "preset", so that the trainings recorded before the
    # rename are recognised as the same and resume instead of starting again
    learned = {("preset" if k == "recipe" else k): v for k, v in cfg.model_dump().items() if k not in RUNTIME_FIELDS
               and not (k in LATER_FIELDS and v is None)}
    return hashlib.sha1(json.dumps(learned, sort_keys=True).encode()).hexdigest()[:10]


def retrain(directory: str | Path, top: int = RetrainConfig.default("top"), trial_ids: Sequence[int] = (),
            references: Sequence[str] | None = None, recipe: str = DEFAULT_RECIPE,
            dataset: str | None = None, cache: str | None = None, overrides: dict[str, Any] | None = None,
            measure: bool = True, event: Event | None = None, progress: StepProgress | None = None,
            dry_run: bool = False, remeasure: bool = False, spread_n: int = RetrainConfig.default("spread"),
            score_proxy: bool = False) -> list[Retrained] | list[Planned]:
    """Train every candidate in full (resumably) and record it; returns the rows of this recipe (with
    ``dry_run``, the plan). With ``remeasure``, train nothing: time every recorded candidate afresh (no
    cache) and keep each timing. ``references=None``: those of the experiment's space
    (``references_for_space``)."""
    from mnas.train import load_proxy_data

    directory = Path(directory)
    Store(directory, readonly=True).close()  # a missing or damaged experiment: its one-line error first
    # a plan only reads: it may look at an experiment another retrain is working on
    with (Store(directory, readonly=True) if dry_run else
          Store(directory, create=False, lock_name=RETRAIN_LOCK_NAME)) as store:
        cfg = recipe_config(store, recipe, dataset, cache, overrides or {})
        digest = recipe_digest(cfg)
        if references is None:
            references = references_for_space(stored_config(store).space)
        todo = candidates(store, top, trial_ids, references, spread_n)
        if not todo:
            raise MnasError(f"nothing to retrain in {directory}: no completed trial and no reference")
        done = {r.key: r for r in store.retrained()}
        if dry_run:
            return [Planned(_key(c, digest), c.label, c.kind, c.arch,
                            str(done[_key(c, digest)].status) if _key(c, digest) in done else "to train")
                    for c in todo]
        exp = stored_config(store)
        job = latency_job(exp, store)
        if remeasure:
            return [_remeasure(store, done[_key(c, digest)], replace(job, cache=None), event)
                    for c in todo if _key(c, digest) in done]
        if score_proxy:
            return [_score_proxy(store, done[_key(c, digest)], exp, event)
                    for c in todo if _key(c, digest) in done]
        data = None
        rows = []
        for c in todo:
            key = _key(c, digest)
            row = done.get(key)
            if row is not None and row.status == TrialStatus.COMPLETED:
                if event:
                    event("skip", row)
                rows.append(row)
                continue
            if data is None:
                data = load_proxy_data(cfg, cfg.seed)
            rows.append(_train_one(store, c, key, cfg, data, directory / "retrain" / f"{_slug(c.label)}-{digest}",
                                   job if measure else None, row, event, progress))
        return rows


def _train_one(store: Store, c: Candidate, key: str, cfg: TrainTask, data, out: Path, job, old: Retrained | None,
               event: Event | None, progress: StepProgress | None) -> Retrained:
    from mnas.space import Architecture
    from mnas.train.full import train_full

    row: dict[str, Any] = {"key": key, "label": c.label, "kind": c.kind, "trial_id": c.trial_id, "arch": c.arch,
                           "status": "running", "checkpoint": str(out),
                           "started": (old and old.started) or time.time(), "error": None}
    if c.proxy_accuracy is not None:  # a reference's score (--score-proxy) is kept when its training resumes
        row["proxy_accuracy"] = c.proxy_accuracy
    data_info = {"zoo": c.zoo, "width": c.width, "recipe": cfg.model_dump(), "recipe_digest": key.rpartition("|")[2],
                 "dataset": data.name,
                 "split": dict(data.split)}
    if job is not None and (old is None or old.latency_ms is None):
        m = measure_latency(c.arch, job)
        row.update(latency_ms=m.latency_ms, params=m.params, macs=m.macs)
        data_info["latency"] = m.latency
    elif old is not None:  # timed before (a resumed run, or --remeasure): keep those timings
        row.update(latency_ms=old.latency_ms, params=old.params, macs=old.macs)
        data_info.update({k: old.data[k] for k in ("latency", "latency_runs") if k in old.data})
    row["data"] = data_info
    store.put_retrained(row)
    if event:
        event("start", Retrained(**row))
    t0 = time.perf_counter()
    try:
        r = train_full(Architecture.parse(c.arch), data, cfg, out, name=c.label, resume=True, progress=progress)
    except MnasError as e:
        row.update(status="failed", error=str(e), finished=time.time())
        store.put_retrained(row)
        raise
    data_info["history"] = r.history
    row.update(status="completed" if r.ok else "failed", error=r.error, top1=r.top1, best_top1=r.best_top1,
               epochs=r.epochs, finished=time.time(),
               seconds=((old and old.seconds) or 0.0) + (time.perf_counter() - t0))
    row["params"] = r.params  # the network as trained (its own classes), not the latency's 1000-class head
    store.put_retrained(row)
    if event:
        event("done", Retrained(**row))
    return Retrained(**row)


def _remeasure(store: Store, row: Retrained, job, event: Event | None) -> Retrained:
    """A fresh timing of a recorded model, kept beside the earlier ones with the machine's load, so a table can
    show the spread of timings taken at different times rather than one draw."""
    load_before = os.getloadavg()[0]
    m = measure_latency(row.arch, job)
    data = dict(row.data)
    data["latency"] = m.latency
    data["latency_runs"] = [*data.get("latency_runs", []),
                            {"latency_ms": m.latency_ms, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}]
    # the median of every timing kept: one draw on a drifting machine would decide close comparisons
    row = replace(row, latency_ms=statistics.median(t["latency_ms"] for t in data["latency_runs"]), macs=m.macs,
                  data=data)
    store.put_retrained({"key": row.key, "latency_ms": row.latency_ms, "macs": row.macs, "data": row.data})
    if event:
        event("timed", row)
    return row


def _score_proxy(store: Store, row: Retrained, exp, event: Event | None) -> Retrained:
    """The search's own proxy training for a recorded model that has no proxy accuracy (a reference): so that it
    counts in the proxy's Kendall tau beside the searched models. Exactly what a trial trains (the search's
    proxy config and seed)."""
    if row.proxy_accuracy is not None:
        return row
    from mnas.space import Architecture
    from mnas.train import train_architecture

    r = train_architecture(Architecture.parse(row.arch), exp.proxy, exp.seed)
    if not r.ok:
        raise MnasError(f"{row.label}: the proxy training failed ({r.error})")
    row = replace(row, proxy_accuracy=r.top1)
    store.put_retrained({"key": row.key, "proxy_accuracy": r.top1})
    if event:
        event("proxy", row)
    return row


def _key(c: Candidate, digest: str) -> str:
    return f"{c.label}|{digest}"


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "@.-" else "-" for ch in label)
