"""Ask/tell for users who bring their own training, in Optuna's shape (``mnas.create_study``).

    study = mnas.create_study("runs/mine", target=20.0, reward="soft", latency={"resolution": 224})
    trial = study.ask()                      # an architecture of the space, its latency measured by mnas
    model = trial.build_model(num_classes=10)
    ...                                      # train it your way; trial.report(epoch, acc) / trial.should_prune()
    study.tell(trial, accuracy=0.91)         # rewarded and recorded

A study *is* an experiment: the same store, strategy, checkpoints and ask/tell loop as ``mnas search``
(``mnas.search.driver.Search`` and its ``AskTellLoop``; no second loop), only the proxy training is the user's.
So ``mnas report DIR``, ``mnas export DIR``, ``mnas.open_experiment(DIR)`` and the optuna-dashboard mirror
(``DIR/optuna.db``) work on it as on a search, and ``mnas.load_study(DIR)`` continues it.

* ``ask()`` measures the architecture's latency on the study's backend at once (before the user trains, so
  never while a training runs here) and stores the trial as running. An architecture the strategy proposes
  again is not a new trial: it is told its stored result, as in a search, and the strategy is asked again.
  Trials asked and never told (the process stopped) are offered again first when the study is loaded.
* ``tell(trial, accuracy=A)``: A is a top-1 fraction in [0, 1]; the trial is rewarded (accuracy, latency and T as
  in the search's reward preset). ``state="pruned"`` stores its last reported value as its accuracy without a
  reward; ``state="failed"`` a failure. Pruned and failed trials are told to the strategy as failed (reward
  None), as in a search with a pruner.
* ``trial.report(step, value)`` / ``trial.should_prune()``: Optuna's pruner of the study's ``pruner`` setting,
  against the curves of the trials finished when this one was asked; raise ``mnas.TrialPruned`` (Optuna's own
  exception) from an objective given to ``optimize``.
* A study has no budget of its own unless given one (``n_trials``, ``time_budget_s``): its stored config holds
  ``trials: 1000000`` then; ``ask()`` refuses beyond a budget with a one-line ``MnasError``.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.run.pruning import Decider, PrunerConfig
from mnas.run.trial import error_line, measure_latency, worker_name
from mnas.search.config import ExperimentConfig, config_from_dict, stored_config
from mnas.search.driver import Search, _Trials, claim_experiment, resolve_target
from mnas.search.loop import Proposal, Result
from mnas.space import Architecture
from mnas.store import Store, Trial, TrialStatus

log = logging.getLogger(__name__)

NO_BUDGET = 1_000_000  # the stored trial budget of a study created without one
ASK_ATTEMPTS = 5  # architectures in a row whose latency cannot be measured before ask() gives up

__all__ = ["Study", "StudyTrial", "create_study", "load_study"]


class StudyTrial:
    """One asked architecture (``arch``, ``latency_ms``, ``params``, ``macs``), its id in the experiment
    (``id``; ``number`` is the same, for Optuna's habits) and its intermediate values."""

    def __init__(self, study: Study, proposal: Proposal, row: Trial) -> None:
        self._study, self._proposal = study, proposal
        self.id = self.number = row.id
        self.arch: Architecture = Architecture.parse(row.arch)
        self.latency_ms: float | None = row.latency_ms
        self.params, self.macs = row.params, row.macs
        self._row = row
        self._decider = Decider(study.config.pruner, list(study._search.curves.values()))

    def __repr__(self) -> str:
        return f"StudyTrial(id={self.id}, latency_ms={self.latency_ms}, arch={self.arch.canonical[:40]!r}...)"

    @property
    def intermediate_values(self) -> dict[int, float]:
        return dict(self._decider.intermediate)

    def build_model(self, num_classes: int = 1000, in_chans: int = 3, width_multiplier: float = 1.0):
        """The PyTorch model of the architecture (freshly initialised), as the latency was measured at
        ``width_multiplier`` 1.0."""
        from mnas.latency import LatencySettings
        from mnas.model import build

        checked = LatencySettings(num_classes=num_classes, in_chans=in_chans)
        arch = self.arch if width_multiplier == 1.0 else self.arch.scaled(_positive(width_multiplier, "width"))
        return build(arch, num_classes=checked.num_classes, in_chans=checked.in_chans)

    def report(self, step: int, value: float) -> None:
        """An intermediate accuracy (a fraction in [0, 1]) after ``step`` (an epoch, a number of batches:
        any increasing integer)."""
        if not isinstance(step, numbers.Integral) or isinstance(step, bool) or step < 0:
            raise MnasError(f"trial.report: step must be an integer >= 0, got {step!r}")
        self._decider.report(int(step), _accuracy(value, "trial.report"))

    def should_prune(self) -> bool:
        """Whether the study's pruner would stop this trial now (False with ``pruner="none"``)."""
        return self._decider.should_prune()


class Study:
    """An experiment driven by ask/tell (see the module's docstring). Holds the experiment's writer lock
    until ``close()`` (or the end of a ``with`` block)."""

    def __init__(self, search: Search) -> None:
        self._search = search
        self._trials = _Trials(search, None)
        self._asked: dict[int, StudyTrial] = {}
        self._started = time.monotonic()
        self._stop = False
        self._resumed = search.store.trials(TrialStatus.RUNNING)  # asked and never told: offered again first

    # -- what it is
    @property
    def dir(self) -> Path:
        return self._search.store.dir

    @property
    def config(self) -> ExperimentConfig:
        return self._search.cfg

    @property
    def target_ms(self) -> float | None:
        return self._search.target_ms

    @property
    def trials(self) -> list[Trial]:
        """Every trial of the experiment, as stored (``mnas.store.Trial``)."""
        return self._search.store.trials()

    @property
    def best_trial(self) -> Trial | None:
        """The rank-1 trial, ranked as ``mnas report`` ranks."""
        from mnas.store.query import best_trial

        return best_trial(self._search.store)

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._search.close()

    # -- ask / tell
    def ask(self) -> StudyTrial:
        """The next architecture to train, its latency measured (see the module's docstring)."""
        if self._resumed:
            row = self._resumed.pop(0)
            proposal = Proposal(tuple(row.tokens), row.arch)
            self._search.loop.resume(proposal)
            if row.latency_ms is None:  # stopped while measuring it: measure it now
                m = measure_latency(row.arch, self._search.latency_job)
                self._search.store.set_trial_fields(row.id, latency_ms=m.latency_ms, latency=m.latency,
                                                    params=m.params, macs=m.macs, started=time.time(),
                                                    worker=worker_name(), latency_ratio=m.ratio,
                                                    latency_abs_ms=m.absolute_ms)
                row = self._search.store.trial(row.id)
            return self._offer(proposal, row)
        for _ in range(ASK_ATTEMPTS):
            proposal = self._propose()
            trial_id = self._trials.add(proposal)
            started = time.time()
            try:
                m = measure_latency(proposal.key, self._search.latency_job)
            except Exception as e:  # noqa: BLE001 - as a search's trial: this one fails, the study goes on
                log.warning("trial %d: latency not measurable: %s", trial_id, error_line(e))
                self._finish(proposal, Trial(trial_id, proposal.key, TrialStatus.FAILED, error=error_line(e),
                                             worker=worker_name(), started=started, finished=time.time()))
                continue
            with self._search.store.transaction() as c:
                self._search.store.set_trial_fields(trial_id, c, latency_ms=m.latency_ms, latency=m.latency,
                                                    params=m.params, macs=m.macs, started=started,
                                                    worker=worker_name(), latency_ratio=m.ratio,
                                                    latency_abs_ms=m.absolute_ms)
            return self._offer(proposal, self._search.store.trial(trial_id))
        raise MnasError(f"the latency of {ASK_ATTEMPTS} architectures in a row could not be measured on "
                        f"{self._search.latency_job.backend} (their errors are in the study's trials): check the "
                        "backend with mnas latency")

    def _propose(self) -> Proposal:
        loop = self._search.loop
        while True:
            stop = loop.stop_reason(self._started)
            if stop:
                raise MnasError(f"the study asks no more: {stop}; load it with a larger n_trials to go on")
            proposal, new = loop.ask()
            if new:
                return proposal
            self._trials.repeated(proposal)  # told its stored result (or parked on the one in flight)

    def _offer(self, proposal: Proposal, row: Trial) -> StudyTrial:
        trial = StudyTrial(self, proposal, row)
        self._asked[trial.id] = trial
        return trial

    def tell(self, trial: StudyTrial | int, accuracy: float | None = None, state: str = "completed",
             error: str | None = None) -> Trial:
        """Record an asked trial: ``accuracy`` (a top-1 fraction in [0, 1]) for a completed one;
        ``state="pruned"`` (its last reported value is kept) or ``"failed"`` (with ``error``). Returns the
        stored record, rewarded."""
        asked = self._asked.get(trial.id if isinstance(trial, StudyTrial) else trial)
        if asked is None or (isinstance(trial, StudyTrial) and asked is not trial):
            name = trial.id if isinstance(trial, StudyTrial) else trial
            running = ", ".join(map(str, self._asked)) or "none"
            raise MnasError(f"trial {name!r} is not an asked, untold trial of this study (those: {running}): "
                            "tell each trial from study.ask() once")
        # a string, or Optuna's TrialState (whose values are ints: its name is the state)
        name = state.name if hasattr(state, "name") and not isinstance(state, str) else str(state)
        status = {"completed": TrialStatus.COMPLETED, "complete": TrialStatus.COMPLETED, "pruned": TrialStatus.PRUNED,
                  "failed": TrialStatus.FAILED, "fail": TrialStatus.FAILED}.get(name.lower())
        if status is None:
            raise MnasError(f"study.tell: unknown state {state!r}: expected completed, pruned or failed")
        if status is TrialStatus.COMPLETED:
            if accuracy is None:
                raise MnasError("study.tell: a completed trial needs its accuracy (accuracy=0.87), or pass "
                                "state='pruned' or state='failed'")
            accuracy = _accuracy(accuracy, "study.tell")
        elif status is TrialStatus.PRUNED:
            values = asked.intermediate_values
            accuracy = _accuracy(accuracy, "study.tell") if accuracy is not None else \
                values[max(values)] if values else None
        else:
            accuracy = None
        row = asked._row
        pruning = asked._decider.record() if asked._decider.intermediate else None
        record = Trial(asked.id, row.arch, status, accuracy=accuracy, latency_ms=row.latency_ms,
                       latency=row.latency, params=row.params, macs=row.macs, latency_ratio=row.latency_ratio,
                       latency_abs_ms=row.latency_abs_ms,
                       train={"source": "study.tell", **({"pruning": pruning} if pruning else {})},
                       error=(error or "failed (study.tell)") if status is TrialStatus.FAILED else None,
                       worker=row.worker or worker_name(), started=row.started, finished=time.time())
        del self._asked[asked.id]
        return self._finish(asked._proposal, record)

    def _finish(self, proposal: Proposal, record: Trial) -> Trial:
        result: Result = self._search.score(proposal, record)
        self._search.loop.tell(result)
        self._trials.record(result)
        return result.detail

    # -- Optuna's loop
    def optimize(self, objective: Callable[[StudyTrial], float], n_trials: int | None = None,
                 timeout: float | None = None, callbacks: Iterable[Callable[[Study, Trial], None]] | None = None,
                 catch: tuple[type[Exception], ...] = ()) -> None:
        """Ask, run ``objective(trial)`` (it returns the accuracy), tell, ``n_trials`` times or for ``timeout``
        seconds, whichever comes first, or until a callback calls ``study.stop()``. ``objective`` raising
        ``mnas.TrialPruned``: the trial is told pruned; an exception in ``catch``: failed, and the loop goes
        on; any other exception: failed, and raised. Each callback is called as ``callback(study, record)``
        with the stored record (``mnas.store.Trial``) after each tell."""
        from optuna import TrialPruned

        if n_trials is None and timeout is None:
            raise MnasError("study.optimize needs n_trials, timeout or both")
        started, done, self._stop = time.monotonic(), 0, False
        while not self._stop and (n_trials is None or done < n_trials) and \
                (timeout is None or time.monotonic() - started < timeout):
            trial = self.ask()
            try:
                value = objective(trial)
            except TrialPruned:
                record = self.tell(trial, state="pruned")
            except catch as e:
                record = self.tell(trial, state="failed", error=error_line(e))
            except Exception as e:
                self.tell(trial, state="failed", error=error_line(e))
                raise
            else:
                record = self.tell(trial, accuracy=value)
            done += 1
            for callback in callbacks or ():
                callback(self, record)

    def stop(self) -> None:
        """End ``optimize`` after the trial being told (from a callback, as in Optuna)."""
        self._stop = True


def create_study(directory: str | Path, space: str | None = None, backend: str = "onnxruntime",
                 target: float | str | None = None, reward: str = "soft", strategy: str = "evolution",
                 seed: int = 0, pruner: str | dict[str, Any] | PrunerConfig = "none",
                 latency: dict[str, Any] | None = None, n_trials: int | None = None,
                 load_if_exists: bool = False, **config: Any) -> Study:
    """A new study in ``directory`` (an experiment directory, as ``mnas search`` makes), or with
    ``load_if_exists`` the one there (its settings must match). ``target``: T in ms, or a model whose
    latency on ``backend`` is T (a zoo name, ``NAME@WIDTH``); ``reward``: the reward preset (soft | hard);
    ``pruner``: none | median | asha or a dict of ``mnas.run.pruning.PrunerConfig`` settings; ``latency``:
    latency settings (resolution, threads, runs, ...); ``config``: any other experiment config key
    (``references=False``, ``strategy={"name": ..., "settings": ...}`` for settings, ``time_budget_s``)."""
    raw: dict[str, Any] = {"name": "study", "seed": seed, "trials": n_trials or NO_BUDGET,
                           "strategy": {"name": strategy}, "reward": {"preset": reward},
                           "latency": {**(latency or {}), "backend": backend},
                           "pruner": pruner.model_dump() if isinstance(pruner, PrunerConfig) else
                           {"name": pruner} if isinstance(pruner, str) else pruner}
    if space is not None:
        raw["space"] = space
    if isinstance(target, str):
        raw["reward"]["target_model"] = target
    elif target is not None:
        raw["reward"]["target_ms"] = target
    raw.update(config)
    cfg = config_from_dict(raw, "create_study")
    resume = load_if_exists and _holds_experiment(directory)
    return _open(cfg, directory, resume)


def load_study(directory: str | Path, n_trials: int | None = None) -> Study:
    """The study (or search) in ``directory``, to continue with its stored settings; ``n_trials`` raises its
    trial budget."""
    with Store(directory, readonly=True) as store:
        cfg = stored_config(store)
    if n_trials is not None:
        cfg = config_from_dict({**cfg.resolved(), "trials": n_trials}, "load_study")
    return _open(cfg, directory, resume=True)


def _open(cfg: ExperimentConfig, directory: str | Path, resume: bool) -> Study:
    from mnas.latency import get_backend

    store, cfg = claim_experiment(cfg, directory, resume)
    try:
        try:  # the backend, before anything is stored: one line, as mnas search's preflight says it
            get_backend(cfg.latency.backend).identity(cfg.latency.settings())
        except MnasError:
            raise
        except Exception as e:  # noqa: BLE001
            raise MnasError(f"latency backend {cfg.latency.backend!r} is not usable: {error_line(e)}") from e
        return Study(Search(store, cfg, resolve_target(cfg, store)))
    except BaseException:
        store.close()
        raise


def _holds_experiment(directory: str | Path) -> bool:
    from mnas.store.sqlite import DB_NAME

    return (Path(directory) / DB_NAME).exists()


def _accuracy(value: Any, where: str) -> float:
    real = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not 0.0 <= real <= 1.0:
        hint = f" (a percentage? pass {real / 100:g})" if 1.0 < real <= 100.0 else ""
        raise MnasError(f"{where}: accuracy must be a top-1 fraction in [0, 1], got {value!r}{hint}")
    return real


def _positive(value: Any, what: str) -> float:
    if not isinstance(value, numbers.Real) or not value > 0:
        raise MnasError(f"{what} must be a positive number, got {value!r}")
    return float(value)
