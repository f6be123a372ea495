"""A live view without web code of our own: every finished trial is mirrored into an Optuna study beside the
experiment (``EXPERIMENT/optuna.db``), so ``optuna-dashboard sqlite:///EXPERIMENT/optuna.db`` shows a running search.

The experiment's own store stays the truth; the mirror is brought up to date from it on every start (trials a
kill -9 left out are added), and a mirror that cannot be written is logged and skipped, never a failed search.

What an Optuna user expects to see:

- two named objectives, ``accuracy`` (maximize) and ``latency_ms`` (minimize), so the dashboard draws the
  Pareto front; mnas's scalar reward is the user attribute ``reward``;
- the decisions as categorical parameters with their labels (``b1.op = mb6``), so the importance and slice
  plots read as the search space does;
- Optuna's trial number N is mnas trial N. Optuna numbers a study's trials 0, 1, 2, ... in the order they are
  added and has no way to set a number, while mnas ids start at 1: so trial 0 is a placeholder (state FAIL,
  user attribute ``placeholder``), and trials are added in id order (one that finishes before an earlier one
  waits for it);
- each trial's real start and end (``started``/``finished`` of the trial record), so the timeline works.

A mirror written by an older mnas (one objective, parameters as indices, numbers off by one) is rebuilt from
the store when a search opens it; so is one whose entries no longer match the store (a failed trial retried:
Optuna cannot change a finished trial).
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from mnas.space.decisions import SearchSpace
from mnas.store import Trial, TrialStatus

log = logging.getLogger(__name__)

MIRROR_NAME = "optuna.db"
STUDY_NAME = "mnas"
ID_ATTR = "mnas_trial_id"
VERSION_ATTR = "mnas_mirror_version"
MIRROR_VERSION = 2  # 1 (unmarked): the reward as the only value, token indices, numbers = id - 1
METRICS = ("accuracy", "latency_ms")
DIRECTIONS = ("maximize", "minimize")
PLACEHOLDER_ATTR = "placeholder"
PLACEHOLDER_NOTE = "not a trial: mnas trial ids start at 1, so Optuna trial N is mnas trial N"


def storage_url(directory: str | Path) -> str:
    return f"sqlite:///{Path(directory).resolve() / MIRROR_NAME}"


def _when(*stamps: float | None) -> datetime | None:
    """The first known of ``stamps`` (seconds since the epoch) as Optuna keeps times: naive, local."""
    return next((datetime.fromtimestamp(s) for s in stamps if s), None)


class OptunaMirror:
    def __init__(self, directory: str | Path, space: SearchSpace, name: str = STUDY_NAME) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.space, self.name = space, name
        self.storage = optuna.storages.RDBStorage(storage_url(directory))  # ours to close: see close()
        self._distributions = {d.name: optuna.distributions.CategoricalDistribution(list(d.choices))
                               for d in space.decisions}
        self._records: dict[int, Trial] = {}  # every trial told, by id: what a rebuild writes again
        self._gaps: set[int] = set()  # ids the store has no trial for: placeholders, or the view would stall
        self.rebuilt = False
        self.study = self._open_study()
        self._next = len(self.study.get_trials(deepcopy=False))  # the next number, = the next id to mirror

    def _open_study(self) -> Any:
        optuna = self._optuna
        if self.name in optuna.study.get_all_study_names(self.storage):
            study = optuna.load_study(study_name=self.name, storage=self.storage)
            if study.user_attrs.get(VERSION_ATTR) == MIRROR_VERSION and self._aligned(study):
                return study
            # an older mnas's mirror, or one that no longer matches: a view, so rebuilt from the store
            optuna.delete_study(study_name=self.name, storage=self.storage)
            self.rebuilt = True
        study = optuna.create_study(storage=self.storage, study_name=self.name, directions=list(DIRECTIONS))
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what the dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(METRICS))
        study.set_user_attr(VERSION_ATTR, MIRROR_VERSION)
        study.set_user_attr("numbers", "Optuna trial N is mnas trial N (trial 0 is a placeholder)")
        study.set_user_attr("reward", "mnas's reward of each trial is its user attribute 'reward'")
        return study

    @staticmethod
    def _aligned(study: Any) -> bool:
        return all(PLACEHOLDER_ATTR in t.user_attrs or t.user_attrs.get(ID_ATTR) == t.number
                   for t in study.get_trials(deepcopy=False))

    def close(self) -> None:
        """Release the file: the storage's connection pool keeps ``optuna.db`` open after the search, in a
        process that goes on (the Python API, the tests), until it is disposed of."""
        self.storage.remove_session()
        self.storage.engine.dispose()

    def sync(self, trials: list[Trial]) -> int:
        """Add the finished trials of the store (``trials``: all of them) not mirrored yet, in id order; returns
        how many were added. Running trials are remembered: the ones after them wait for them."""
        ids = {t.id for t in trials}
        self._gaps |= set(range(1, max(ids, default=0))) - ids
        for t in trials:
            self._records.setdefault(t.id, t)
        return self._flush()

    def add(self, t: Trial) -> None:
        """Mirror one finished trial (once the trials before it are)."""
        self._records[t.id] = t
        if t.id < self._next:  # mirrored before (a failed trial retried): Optuna cannot change a finished trial
            self._rebuild()
        else:
            self._flush()

    def _rebuild(self) -> None:
        self._optuna.delete_study(study_name=self.name, storage=self.storage)
        self.study, self._next = self._open_study(), 0
        self._flush()

    def _ready(self, n: int) -> bool:
        if n == 0:  # the placeholder goes in with trial 1, at its time
            return self._ready(1)
        if n in self._gaps:
            return True
        t = self._records.get(n)
        return t is not None and t.status is not TrialStatus.RUNNING

    def _flush(self) -> int:
        added = 0
        while self._ready(self._next):
            n = self._next
            self.study.add_trial(self._placeholder(n) if n == 0 or n in self._gaps else self._frozen(self._records[n]))
            self._next += 1
            added += n > 0 and n not in self._gaps
        return added

    def _placeholder(self, n: int) -> Any:
        T = self._optuna.trial
        first = self._records.get(1)
        when = (_when(first.started, first.created) if first else None) or datetime.now()
        note = PLACEHOLDER_NOTE if n == 0 else f"not a trial: the store has no trial {n}"
        frozen = T.create_trial(state=T.TrialState.FAIL, user_attrs={PLACEHOLDER_ATTR: note})
        frozen.datetime_start = frozen.datetime_complete = when
        return frozen

    def _frozen(self, t: Trial) -> Any:
        T = self._optuna.trial
        done = t.status is TrialStatus.COMPLETED and t.accuracy is not None and t.latency_ms is not None
        # accuracy and latency again as attributes: a trial's page shows its values unnamed, attributes named
        attrs: dict[str, Any] = {ID_ATTR: t.id, "arch": t.arch, "accuracy": t.accuracy, "latency_ms": t.latency_ms,
                                 "reward": t.reward, "params": t.params, "macs": t.macs, "worker": t.worker,
                                 "attempts": t.attempts}
        if t.error:
            attrs["error"] = t.error[:500]
        params = ({d.name: d.choices[int(v)] for d, v in zip(self.space.decisions, t.tokens)}
                  if len(t.tokens) == len(self.space.decisions) else {})
        curve = ((t.train or {}).get("pruning") or {}).get("intermediate") or []  # pruning's accuracy per step
        state = T.TrialState.COMPLETE if done else T.TrialState.PRUNED if t.status is TrialStatus.PRUNED \
            else T.TrialState.FAIL
        frozen = T.create_trial(state=state, values=[t.accuracy, t.latency_ms] if done else None, params=params,
                                distributions={k: self._distributions[k] for k in params},
                                intermediate_values={int(k): v for k, v in curve},
                                user_attrs={k: v for k, v in attrs.items() if v is not None})
        start = _when(t.started, t.created)
        end = _when(t.finished) or start
        if start is not None:
            frozen.datetime_start, frozen.datetime_complete = start, max(start, end)
        return frozen


def open_mirror(directory: str | Path, space: SearchSpace, trials: list[Trial]) -> OptunaMirror | None:
    """The mirror of an experiment, brought up to date with ``trials``; None (logged) if it cannot be used."""
    mirror = None
    try:
        mirror = OptunaMirror(directory, space)
        mirror.sync(trials)
        if mirror.rebuilt:
            log.info("rebuilt the live view (%s) from the store: an older mnas wrote it", MIRROR_NAME)
        return mirror
    except Exception as e:  # noqa: BLE001 - a view must never stop a search
        log.warning("the live view (%s) is off: %s (delete the file to have it rebuilt from the store)",
                    MIRROR_NAME, _line(e))
        close_mirror(mirror)
        return None


def _line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def close_mirror(mirror: OptunaMirror | None) -> None:
    """Release the mirror's file; a failure is logged, never raised (the view must not stop a search)."""
    if mirror is None:
        return
    try:
        mirror.close()
    except Exception as e:  # noqa: BLE001
        log.warning("closing %s: %s", MIRROR_NAME, _line(e))


def mirror_trial(mirror: OptunaMirror | None, trial: Trial) -> None:
    if mirror is None:
        return
    try:
        mirror.add(trial)
    except Exception as e:  # noqa: BLE001
        log.warning("trial %d not mirrored to %s: %s", trial.id, MIRROR_NAME, _line(e))
