"""The search driver: ask the strategy, run trials on an executor, reward, tell, record — resumably.

Every change of the strategy's state is written in the same SQLite transaction as the trial row it
belongs to (ask -> 'running' row + checkpoint; result -> finished row + checkpoint), so after a kill -9
``--resume`` restores exactly the controller that produced the rows on disk and re-runs only the trials
that were in flight.

Four steps, each its own function: ``claim_experiment`` (a new store, or the stored config on resume; the
store is this process's alone until closed), ``preflight`` (everything a trial needs, checked before the
first one), ``resolve_target`` (T, measured once and stored), and ``Search.run`` (the loop: the
``AskTellLoop`` of ``mnas.search.loop``, which the tabular benchmark runs too, with the trials of this
experiment as its evaluator). Every result is checked before it is rewarded (``check_result``): a NaN or
out-of-range number fails its trial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.run import Executor, LatencyJob, TrialJob, make_executor
from mnas.run.pruning import TrialCurve, curve_of
from mnas.run.trial import PruneJob
from mnas.search.checks import check_result, preflight
from mnas.search.config import ExperimentConfig, config_from_stored
from mnas.search.loop import AskTellLoop, Outcome, Proposal, Result, StopRule
from mnas.search.mirror import close_mirror, mirror_trial, open_mirror
from mnas.search.tensorboard import ScalarLog
from mnas.search.references import measure_references, references_for, score_references, unscored
from mnas.search.retime import relative_job, retime_front
from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies import make_strategy
from mnas.space import load_space
from mnas.store import Store, Trial, TrialStatus

log = logging.getLogger(__name__)

ProgressFn = Callable[["SearchState"], None]
RESUMABLE_KEYS = {"trials", "time_budget_s", "executor"}  # what --resume may change: budgets, where trials run


@dataclass
class SearchState:
    total: int = 0  # trials in the store, all statuses
    completed: int = 0
    failed: int = 0
    duplicates: int = 0
    best: Trial | None = None
    budget: int | None = None
    stopped_because: str = ""
    pruned: int = 0  # stopped early by the pruner


def claim_experiment(cfg: ExperimentConfig, out: str | Path, resume: bool = False) -> tuple[Store, ExperimentConfig]:
    """The store of ``out``, locked for this process, and the config to run: ``cfg`` for a new experiment
    (``out`` must not exist yet or be empty), the stored one on resume (``out`` must hold an intact one)."""
    store = Store(out, create=not resume)
    try:
        stored = store.meta().config or None
        trials = store.counts()["total"]
        if stored is None and trials:
            raise MnasError(f"{store.path} holds {trials} trials but no config: it is damaged; restore it from a "
                            "backup")
        if not resume:
            if stored is not None:
                raise MnasError(f"{out} already holds an experiment: pass --resume to continue it, or choose "
                                "another experiment directory")
            return store, cfg
        if stored is None:  # a first run that stopped before its first trial: nothing to continue
            raise MnasError(f"{out} holds no started experiment to resume: run without --resume")
        if trials and store.latest_checkpoint() is None:
            raise MnasError(f"{store.path} holds {trials} trials but no controller checkpoint: resuming would "
                            "restart the strategy over them; restore the file from a backup")
        return store, _merge_resumed(stored, cfg)
    except BaseException:
        store.close()
        raise


def resolve_target(cfg: ExperimentConfig, store: Store) -> float | None:
    """T in ms: stored by an earlier run of this experiment, given, or measured now on the search's backend."""
    stored = store.meta().target_ms
    if stored is not None:
        return float(stored)
    if cfg.reward.target_ms is not None:
        return cfg.reward.target_ms
    if cfg.reward.target_model is None:
        return None
    from mnas.run.trial import measure_latency
    from mnas.space import resolve_arch

    _, arch = resolve_arch(cfg.reward.target_model)
    log.info("measuring T: %s on %s", cfg.reward.target_model, cfg.latency.backend)
    return measure_latency(arch.canonical, latency_job(cfg, store)).latency_ms


def latency_job(cfg: ExperimentConfig, store: Store) -> LatencyJob:
    return LatencyJob.from_config(cfg.latency, str(store.dir / "latency-cache.sqlite"))


SCREEN_LOG_S = 5.0  # a screen's timing of candidates logs its progress this often


class _Screening:
    """What a screen timing candidates for the next trial has done (50 candidates can take a minute): shown
    as that trial's phase on the bar, and logged every ``SCREEN_LOG_S`` (the output without a terminal)."""

    def __init__(self, trial: int = 0) -> None:
        self.trial, self.timed = trial, 0
        self.start = self.said = time.monotonic()

    def count(self) -> None:
        self.timed += 1
        now = time.monotonic()
        if now - self.said >= SCREEN_LOG_S:
            self.said = now
            log.info("screening for trial %d: %d candidate(s) timed in %.0f s", self.trial, self.timed,
                     now - self.start)


class Search:
    """One experiment's loop. ``Search.open(cfg, out, resume)`` is the usual way in. The bookkeeping of
    asks, tells, duplicates and the stopping rule is the ``AskTellLoop``'s; this class runs its trials on
    an executor and writes each step to the store."""

    def __init__(self, store: Store, cfg: ExperimentConfig, target_ms: float | None,
                 executor: Executor | None = None) -> None:
        self.store, self.cfg, self.target_ms = store, cfg, target_ms
        self.space = load_space(cfg.space)
        self.strategy = make_strategy(cfg.strategy.name, self.space, seed=cfg.seed, **cfg.strategy.settings)
        self.reward_cfg: RewardConfig = cfg.reward.with_target(target_ms)
        self.latency_job = relative_job(cfg, latency_job(cfg, store), target_ms)
        self.scalars = ScalarLog(store.dir) if cfg.tensorboard else None  # before anything is stored: may refuse
        self.executor = executor
        self._screening = _Screening()
        if not store.meta().config:
            self._record_new()
        checkpoint = store.latest_checkpoint()
        if checkpoint is not None:
            self.strategy.load_state_dict(checkpoint["strategy"])
        done: dict[str, Outcome] = {}
        trials = store.trials()  # read once: the answers for duplicates and the live view's catch-up
        for t in trials:
            if t.status is TrialStatus.COMPLETED:
                done[t.arch] = (t.reward, {"accuracy": t.accuracy, "latency_ms": t.latency_ms})
            elif t.status in (TrialStatus.FAILED, TrialStatus.PRUNED):
                done.setdefault(t.arch, (None, None))
        self.curves: dict[int, TrialCurve] = {}  # trial id -> its intermediate accuracies (the pruner's history)
        for t in trials:
            self._keep_curve(t)
        rule = StopRule(cfg.trials, cfg.time_budget_s, cfg.max_duplicate_streak)
        self.loop = AskTellLoop(self.strategy, self._key, rule, trials=len(trials), done=done,
                                latency_oracle=self._latencies)
        if checkpoint is not None:
            self.loop.load_state_dict(checkpoint.get("loop", {}))
        self.mirror = open_mirror(store.dir, self.space, trials) if cfg.live_view else None
        if self.scalars is not None:  # what a kill -9 left out of the log, as the mirror does
            self.scalars.sync(trials)

    @classmethod
    def open(cls, cfg: ExperimentConfig, out: str | Path, resume: bool = False,
             executor: Executor | None = None) -> Search:
        store, cfg = claim_experiment(cfg, out, resume)
        try:
            preflight(cfg)
            return cls(store, cfg, resolve_target(cfg, store), executor)
        except BaseException:
            store.close()
            raise

    def __enter__(self) -> Search:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if getattr(self, "scalars", None) is not None:
                self.scalars.close()
            if getattr(self, "mirror", None) is not None:
                close_mirror(self.mirror)
        finally:
            self.store.close()  # the experiment's lock, whatever the views did

    def _record_new(self) -> None:
        with self.store.transaction() as c:
            self.store.set_meta("config", self.cfg.resolved(), c)
            self.store.set_meta("target_ms", self.target_ms, c)
            self.store.set_meta("reward", self.reward_cfg.to_dict(), c)
            self.store.set_meta("latency", {"backend": self.latency_job.backend,
                                            "settings": self.latency_job.settings.to_dict()}, c)
            self.store.set_meta("space", self.space.describe(), c)
            self.store.set_meta("created", time.time(), c)
        if self.cfg.references.enabled:  # after the config, so a failure here never leaves a store without one
            log.info("timing the reference models on %s", self.latency_job.backend)
            self.store.set_meta("references", measure_references(self.latency_job, references_for(self.space)))

    def _keep_curve(self, trial: Trial) -> None:
        if trial.status in (TrialStatus.COMPLETED, TrialStatus.PRUNED):
            curve = curve_of(trial.status.value, trial.train, trial.accuracy)
            if curve is not None:
                self.curves[trial.id] = curve

    def pruning(self) -> PruneJob | None:
        """What a trial submitted now needs to be pruned: the rule and the curves finished so far."""
        if not self.cfg.pruner.enabled:
            return None
        return PruneJob(self.cfg.pruner, tuple(self.curves[k] for k in sorted(self.curves)))

    def score(self, proposal: Proposal, trial: Trial) -> Result:
        """A finished trial checked and rewarded (a result that fails either fails its trial). A pruned trial
        keeps its last intermediate accuracy in the store but has no reward, and its strategy is told it as a
        failed trial (reward None): its accuracy is not a full proxy's and must not be learnt as one."""
        objectives = None
        check_result(trial)
        if trial.status is TrialStatus.COMPLETED:
            try:
                trial.reward = reward(trial.accuracy, trial.latency_ms, self.reward_cfg, trial.params, trial.macs)
                objectives = {"accuracy": trial.accuracy, "latency_ms": trial.latency_ms}
            except MnasError as e:
                trial.status, trial.error = TrialStatus.FAILED, f"reward: {e}"
        return Result(proposal, trial.reward, objectives, trial)

    def _key(self, tokens: tuple[int, ...]) -> str:
        return self.space.decode(tokens).canonical

    def score_references(self, announce: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """With ``references.score``: train each reference model not scored yet with the trials' own proxy
        training, and store its accuracy and reward with it (the store's references, never a trial: no
        strategy sees them, and they use none of the trial or time budget). ``run`` does it first; calling it
        before (the CLI does, to print a line per model) leaves ``run`` nothing to do. Returns the references."""
        refs = self.store.meta().references
        if not (self.cfg.references.score and unscored(refs)):
            return refs
        return score_references(refs, self.cfg.proxy, self.cfg.seed, self.reward_cfg,
                                lambda done: self.store.set_meta("references", done), announce)

    # -- the loop
    def run(self, retry_failed: bool = False, progress: ProgressFn | None = None) -> SearchState:
        self.score_references()  # before the budget's clock starts: the references are not the strategy's
        start = time.monotonic()
        if self.executor is None:
            self.executor = make_executor(self.cfg.executor)
        trials = _Trials(self, self.executor)
        try:
            for t in self.store.trials(TrialStatus.RUNNING):  # in flight when the last run stopped
                trials.resubmit(t)
            if retry_failed:
                for t in self.store.trials(TrialStatus.FAILED):
                    with self.store.transaction() as c:
                        self.store.set_trial_fields(t.id, c, status=TrialStatus.RUNNING, error=None,
                                                    attempts=t.attempts + 1)
                    trials.resubmit(t)
            report = (lambda: progress(self._state())) if progress else None
            stopped = self.loop.run(trials, report, started=start)
        finally:  # also on Ctrl-C or an error: stop workers (a Ray instance the executor started)
            self.executor.shutdown()
        self._retime()
        state = self._state()
        state.stopped_because = stopped
        log.info("search stopped: %s", state.stopped_because)
        if progress:
            progress(state)
        return state

    def _retime(self) -> None:
        """The front and the top trials timed again beside T's model, now that no trial trains beside them
        (``latency.retime_top``; only where the trials were timed beside T). A failure costs the figures, not
        the search."""
        if not (self.cfg.latency.retime_top and self.latency_job.reference):
            return
        from mnas.run.trial import error_line

        try:
            retime_front(self.store, self.cfg, self.cfg.latency.retime_top)
        except Exception as e:  # noqa: BLE001 - e.g. a backend gone: the search's own figures stand
            log.warning("the front was not re-timed: %s", error_line(e))

    def _latencies(self, candidates: list[tuple[int, ...]]) -> list[float | None]:
        """Latency of each candidate, None where it cannot be measured: timing is cheap next to training (with
        the local executor the measurement lands in the latency cache, so the trial that follows reuses it)."""
        from mnas.latency.lut.backend import hold_speed
        from mnas.run.trial import _phase, error_line, measure_latency

        # other executors (and local workers) may be training beside this process now: such a number is good
        # enough to screen with, but must not be cached and become the trial's own latency (the trial is timed
        # on a quiet machine)
        alone = self.cfg.executor.kind == "local" and self.cfg.executor.workers == 1
        job = self.latency_job if alone else replace(self.latency_job, cache=None)
        # a lookup table's speed factor is timed again for trials, not for the many candidates a screen predicts
        job = replace(job, backend=hold_speed(job.backend))
        out: list[float | None] = []
        shown = self._screening
        if shown.trial != self.loop.trials + 1:  # the candidates for the next trial, over all the calls it takes
            self._screening = shown = _Screening(self.loop.trials + 1)
        try:
            for tokens in candidates:
                _phase(shown.trial, f"screening: timing candidate {shown.timed + 1}")
                try:
                    out.append(measure_latency(self.space.decode(tokens).canonical, job).latency_ms)
                except Exception as e:  # noqa: BLE001 - as a trial's latency step would fail: not this candidate
                    log.info("candidate not measurable: %s", error_line(e))
                    out.append(None)
                shown.count()
        finally:
            _phase(shown.trial, "done")
        return out

    def _checkpoint(self, conn: Any) -> None:
        self.store.save_checkpoint({"strategy": self.strategy.state_dict(), "loop": self.loop.state_dict()},
                                   self.loop.told, conn=conn)

    def _state(self) -> SearchState:
        from mnas.store.query import best_trial

        counts = self.store.counts()
        return SearchState(counts["total"], counts["completed"], counts["failed"], self.loop.duplicates,
                           best_trial(self.store), self.cfg.trials, pruned=counts["pruned"])


class _Trials:
    """The loop's evaluator in a search: trials on the executor, every step written to the store in one
    transaction with the checkpoint it leads to."""

    def __init__(self, search: Search, executor: Executor | None) -> None:
        """``executor`` None: trials evaluated by the caller (``mnas.study.Study``), one at a time."""
        self.search, self.store, self.executor = search, search.store, executor
        self.capacity = executor.capacity if executor is not None else 1
        self.running: dict[int, Proposal] = {}  # trial id -> what it evaluates

    def in_flight(self) -> int:
        return self.executor.in_flight()

    def resubmit(self, trial: Trial) -> None:
        """A stored trial run again (in flight when the last run stopped, or a failed one retried)."""
        proposal = Proposal(tuple(trial.tokens), trial.arch)
        self.search.loop.resume(proposal)
        self._submit(trial.id, proposal)

    def start(self, proposal: Proposal) -> None:
        self._submit(self.add(proposal), proposal)

    def add(self, proposal: Proposal) -> int:
        """A new trial of ``proposal`` in the store (running), with the checkpoint it leads to; its id."""
        with self.store.transaction() as c:
            trial_id = self.store.add_trial(proposal.key, proposal.tokens, c)
            self.search._checkpoint(c)
        return trial_id

    def repeated(self, proposal: Proposal) -> None:
        with self.store.transaction() as c:
            self.search._checkpoint(c)

    def _submit(self, trial_id: int, proposal: Proposal) -> None:
        s = self.search
        self.running[trial_id] = proposal
        self.executor.submit(TrialJob(trial_id, proposal.key, s.latency_job, s.cfg.proxy, s.cfg.seed, s.pruning()))

    def wait(self) -> Iterator[Result]:
        """Each finished trial, checked and rewarded (a result that fails either fails its trial)."""
        for trial in self.executor.wait():
            yield self.search.score(self.running.pop(trial.id), trial)

    def record(self, result: Result) -> None:
        s, trial = self.search, result.detail
        with self.store.transaction() as c:
            self.store.finish_trial(trial, c)
            s._checkpoint(c)
            diag = s.strategy.diagnostics()
            if diag:
                self.store.add_diagnostics(diag, s.loop.told, c)
        trial.tokens = list(result.proposal.tokens)
        s._keep_curve(trial)
        mirror_trial(s.mirror, trial)
        if s.scalars is not None:
            s.scalars.add(trial, diag)
        log.info("trial %d %s: arch %s accuracy %s latency %s ms reward %s in %s s on %s%s", trial.id, trial.status,
                 _digest(trial.arch), _fmt(trial.accuracy), _fmt(trial.latency_ms), _fmt(trial.reward),
                 _fmt(None if trial.finished is None or trial.started is None else trial.finished - trial.started),
                 trial.worker, f": {trial.error}" if trial.error else "")


def _digest(arch: str) -> str:
    from mnas.space import Architecture

    try:
        return Architecture.parse(arch).digest
    except MnasError:
        return arch[:16]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _merge_resumed(stored: dict[str, Any], cfg: ExperimentConfig) -> ExperimentConfig:
    """A resumed experiment keeps its stored config; only the budget may change on the command line. Both are
    compared resolved, so a config stored with keys renamed since (``preset`` for ``recipe``) still matches."""
    given, stored = cfg.resolved(), config_from_stored(stored).resolved()
    for key in given.keys() - RESUMABLE_KEYS:
        if given[key] != stored.get(key):
            raise MnasError(f"--resume continues the stored experiment, but '{key}' differs from it: "
                            f"resume with the original config (only {'/'.join(sorted(RESUMABLE_KEYS))} may change)")
    return config_from_stored({**stored, **{k: given[k] for k in RESUMABLE_KEYS}})
