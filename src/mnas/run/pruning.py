"""Pruning (multi-fidelity): stop a proxy training early when its intermediate accuracy says it will not be
among the best. The rules are Optuna's own pruners, not rewritten here: ``median`` (``MedianPruner``: stop a
trial whose accuracy at a step is below the median of the completed trials' at that step) and ``asha``
(``SuccessiveHalvingPruner``: rungs at ``min_resource * reduction_factor**k`` steps; a trial goes on past a
rung only when it is in the top 1/``reduction_factor`` of the trials that reached that rung).

A step is an intermediate report: in a search, step k is the proxy's accuracy after ``k * every`` epochs
(and the last step is the final evaluation); in the Python API, whatever the user reports.

A decision is made from the *history*: the other trials' intermediate curves as the experiment stored them
(``TrialCurve``, a plain picklable record, so a job carries it to a worker process or a Ray task; a job
sees the history as it was when it was submitted). The decision is Optuna's, replayed on an in-memory
study that holds the history; what Optuna's successive halving keeps about each trial (the value with which
it completed each rung) is returned and stored with the trial, so the next decision sees the same rungs
Optuna's own study would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from mnas.schema import Schema

RUNG_PREFIX = "completed_rung_"  # the system attribute Optuna's SuccessiveHalvingPruner keeps per rung


class PrunerConfig(Schema):
    """The ``pruner:`` section of an experiment config (and ``mnas.create_study(pruner=...)``)."""

    name: Literal["none", "median", "asha"] = Field("none", description="none | median (Optuna's MedianPruner) "
                                                    "| asha (Optuna's SuccessiveHalvingPruner)")
    every: float = Field(0.25, gt=0, description="epochs between intermediate evaluations of a proxy training "
                         "(one step); each costs a pass over the validation images")
    min_resource: int = Field(1, ge=1, description="asha: steps before the first rung")
    reduction_factor: int = Field(3, ge=2, description="asha: 1/reduction_factor of the trials go on past a rung")
    startup_trials: int = Field(5, ge=0, description="median: completed trials before it prunes anything")
    warmup_steps: int = Field(0, ge=0, description="median: steps before a trial may be pruned")

    @property
    def enabled(self) -> bool:
        return self.name != "none"


@dataclass(frozen=True)
class TrialCurve:
    """What a pruning decision needs of another trial."""

    state: str  # "completed" | "pruned" (a TrialStatus value)
    intermediate: dict[int, float]  # step -> accuracy
    rungs: dict[str, float] = field(default_factory=dict)  # Optuna's completed_rung_K values
    value: float | None = None  # the final accuracy of a completed trial


def make_pruner(cfg: PrunerConfig):
    """The Optuna pruner of ``cfg`` (None for ``none``)."""
    import optuna

    if cfg.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_steps)
    if cfg.name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_resource,
                                                      reduction_factor=cfg.reduction_factor)
    return None


class Decider:
    """Pruning decisions for one trial against a fixed history: ``report(step, value)`` then
    ``should_prune()``, as an Optuna trial; ``rungs`` is what to store with the trial afterwards."""

    def __init__(self, cfg: PrunerConfig, history: list[TrialCurve]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = cfg
        self.intermediate: dict[int, float] = {}
        self._pruner = make_pruner(cfg)
        self._study = None
        if self._pruner is None:
            return
        T = optuna.trial
        self._study = optuna.create_study(direction="maximize", pruner=self._pruner,
                                          storage=optuna.storages.InMemoryStorage())
        for curve in history:
            done = curve.state == "completed" and curve.value is not None and math.isfinite(curve.value)
            if not done and curve.state != "pruned":
                continue
            self._study.add_trial(T.create_trial(
                state=T.TrialState.COMPLETE if done else T.TrialState.PRUNED, value=curve.value if done else None,
                intermediate_values={int(k): float(v) for k, v in curve.intermediate.items()},
                system_attrs=dict(curve.rungs)))
        self._trial = self._study.ask()

    def report(self, step: int, value: float) -> None:
        self.intermediate[int(step)] = float(value)
        if self._study is not None:
            self._trial.report(float(value), int(step))

    def should_prune(self) -> bool:
        return self._study is not None and bool(self.intermediate) and self._trial.should_prune()

    @property
    def rungs(self) -> dict[str, float]:
        if self._study is None:
            return {}
        mine = next(t for t in self._study.get_trials(deepcopy=False) if t.number == self._trial.number)
        attrs = mine.system_attrs
        return {k: float(v) for k, v in attrs.items() if k.startswith(RUNG_PREFIX)}

    def record(self) -> dict[str, Any]:
        """What a trial stores of its pruning (``Trial.train["pruning"]``)."""
        return {"intermediate": [[k, v] for k, v in sorted(self.intermediate.items())], "rungs": self.rungs}


def curve_of(state: str, train: dict[str, Any] | None, value: float | None) -> TrialCurve | None:
    """A stored trial's curve (from what ``Decider.record`` wrote), None when it has none."""
    rec = (train or {}).get("pruning")
    if not rec or not rec.get("intermediate"):
        return None
    return TrialCurve(state, {int(k): float(v) for k, v in rec["intermediate"]}, dict(rec.get("rungs") or {}), value)
