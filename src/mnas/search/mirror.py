"""A live view without web code of our own: every finished trial is mirrored into an Optuna study beside the
experiment (``EXPERIMENT/optuna.db``), so ``optuna-dashboard sqlite:///EXPERIMENT/optuna.db`` shows a running search.

The experiment's own store stays the truth; the mirror is rebuilt from it on every start (trials a kill -9
left out are added), and a mirror that cannot be written is logged and skipped, never a failed search.
Each Optuna trial holds the decisions as categorical parameters (so the dashboard's importance and slice
plots work), the reward as its value, and accuracy, latency, params, MACs, the architecture string and the
mnas trial id as user attributes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mnas.space.decisions import SearchSpace
from mnas.store import Trial, TrialStatus

log = logging.getLogger(__name__)

MIRROR_NAME = "optuna.db"
STUDY_NAME = "mnas"
ID_ATTR = "mnas_trial_id"


def storage_url(directory: str | Path) -> str:
    return f"sqlite:///{Path(directory).resolve() / MIRROR_NAME}"


class OptunaMirror:
    def __init__(self, directory: str | Path, space: SearchSpace, name: str = STUDY_NAME) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.space = space
        self.storage = optuna.storages.RDBStorage(storage_url(directory))  # ours to close: see close()
        self.study = optuna.create_study(storage=self.storage, study_name=name, direction="maximize",
                                         load_if_exists=True)
        self._distributions = {d.name: optuna.distributions.CategoricalDistribution(list(range(len(d))))
                               for d in space.decisions}
        self._mirrored = {t.user_attrs.get(ID_ATTR) for t in self.study.get_trials(deepcopy=False)}

    def close(self) -> None:
        """Release the file: the storage's connection pool keeps ``optuna.db`` open after the search, in a
        process that goes on (the Python API, the tests), until it is disposed of."""
        self.storage.remove_session()
        self.storage.engine.dispose()

    def sync(self, trials: list[Trial]) -> int:
        """Add the finished trials not mirrored yet; returns how many were added."""
        added = 0
        for t in trials:
            if t.status is not TrialStatus.RUNNING and t.id not in self._mirrored:
                self.add(t)
                added += 1
        return added

    def add(self, t: Trial) -> None:
        T = self._optuna.trial
        done = t.status is TrialStatus.COMPLETED and t.reward is not None
        attrs: dict[str, Any] = {ID_ATTR: t.id, "arch": t.arch, "accuracy": t.accuracy, "latency_ms": t.latency_ms,
                                 "params": t.params, "macs": t.macs, "worker": t.worker}
        if t.error:
            attrs["error"] = t.error[:500]
        if t.id in self._mirrored:  # a retried trial: Optuna cannot update the earlier entry, so mark this one
            attrs["attempt"] = t.attempts
        params = {d.name: int(v) for d, v in zip(self.space.decisions, t.tokens)} if t.tokens else {}
        curve = ((t.train or {}).get("pruning") or {}).get("intermediate") or []  # pruning's accuracy per step
        state = T.TrialState.COMPLETE if done else T.TrialState.PRUNED if t.status is TrialStatus.PRUNED \
            else T.TrialState.FAIL
        self.study.add_trial(T.create_trial(
            state=state, value=t.reward if done else None, intermediate_values={int(k): v for k, v in curve},
            params=params, distributions={k: self._distributions[k] for k in params}, user_attrs=attrs))
        self._mirrored.add(t.id)


def open_mirror(directory: str | Path, space: SearchSpace, trials: list[Trial]) -> OptunaMirror | None:
    """The mirror of an experiment, brought up to date with ``trials``; None (logged) if it cannot be used."""
    mirror = None
    try:
        mirror = OptunaMirror(directory, space)
        mirror.sync(trials)
        return mirror
    except Exception as e:  # noqa: BLE001 - a view must never stop a search
        log.warning("the live view (%s) is off: %s", MIRROR_NAME, e)
        close_mirror(mirror)
        return None


def close_mirror(mirror: OptunaMirror | None) -> None:
    """Release the mirror's file; a failure is logged, never raised (the view must not stop a search)."""
    if mirror is None:
        return
    try:
        mirror.close()
    except Exception as e:  # noqa: BLE001
        log.warning("closing %s: %s", MIRROR_NAME, e)


def mirror_trial(mirror: OptunaMirror | None, trial: Trial) -> None:
    if mirror is None:
        return
    try:
        mirror.add(trial)
    except Exception as e:  # noqa: BLE001
        log.warning("trial %d not mirrored to %s: %s", trial.id, MIRROR_NAME, e)
