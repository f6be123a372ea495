"""The search driver: ask the strategy, run trials on an executor, reward, tell, record — resumably.

Every change of the strategy's state is written in the same SQLite transaction as the trial row it
belongs to (ask -> 'running' row + checkpoint; result -> finished row + checkpoint), so after a kill -9
``--resume`` restores exactly the controller that produced the rows on disk and re-runs only the trials
that were in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.run import Executor, make_executor
from mnas.search.config import ExperimentConfig
from mnas.search.evaluate import TrialOutcome, TrialTask, latency_spec
from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies.base import make_strategy
from mnas.space import MnasNetSpace
from mnas.store.sqlite import Store

ProgressFn = Callable[["SearchState"], None]


@dataclass
class SearchState:
    total: int = 0  # trials in the store, all statuses
    completed: int = 0
    failed: int = 0
    duplicates: int = 0
    best: dict[str, Any] | None = None
    budget: int | None = None
    stopped_because: str = ""


def reward_config(cfg: ExperimentConfig, target_ms: float | None) -> RewardConfig:
    r = cfg.reward
    constraints = [c.model_dump() for c in r.constraints]
    if r.preset:
        rc = RewardConfig.from_preset(r.preset, target_ms, constraints)
        rc.alpha = r.alpha if r.alpha is not None else rc.alpha
        rc.beta = r.beta if r.beta is not None else rc.beta
        return rc
    return RewardConfig(target_ms, r.alpha, r.beta, None, constraints)


def resolve_target(cfg: ExperimentConfig, store: Store) -> float | None:
    """T in ms: given, stored by an earlier run of this experiment, or measured now on the same backend."""
    stored = store.get_meta("target_ms")
    if stored is not None:
        return float(stored)
    if cfg.reward.target_ms is not None:
        return cfg.reward.target_ms
    if cfg.reward.target_model is None:
        return None
    from mnas.search.evaluate import measure_latency
    from mnas.space import resolve_arch

    _, arch = resolve_arch(cfg.reward.target_model)
    return float(measure_latency(arch.canonical, latency_spec(cfg, _cache_path(store)))["latency_ms"])


def _cache_path(store: Store) -> str:
    return str(store.dir / "latency-cache.sqlite")


class Experiment:
    def __init__(self, cfg: ExperimentConfig, out: str | Path, resume: bool = False,
                 executor: Executor | None = None) -> None:
        self.store = Store(out)
        existing = self.store.get_meta("config")
        if existing is not None and not resume:
            raise MnasError(f"{out} already holds an experiment: pass --resume to continue it, "
                            "or choose another --out")
        if existing is not None:
            cfg = _merge_resumed(existing, cfg)
        self.cfg = cfg
        self.space = MnasNetSpace.load(cfg.space)
        self.strategy = make_strategy(cfg.strategy.name, self.space, seed=cfg.seed, **cfg.strategy.options)
        self.executor = executor or make_executor(cfg.executor)
        self.in_flight: dict[int, tuple[tuple[int, ...], str]] = {}  # trial id -> (tokens, canonical arch)
        self.waiting: dict[str, list[tuple[int, ...]]] = {}  # arch in flight -> duplicate proposals
        self.duplicates = 0
        self.n_told = 0  # tells, including repeated ones: the x axis of diagnostics
        checkpoint = self.store.latest_checkpoint() if existing is not None else None
        if checkpoint is not None:
            self.strategy.load_state_dict(checkpoint["strategy"])
            loop = checkpoint.get("loop", {})
            self.duplicates = loop.get("duplicates", 0)
            self.n_told = loop.get("told", 0)
            self.waiting = {k: [tuple(t) for t in v] for k, v in loop.get("waiting", {}).items()}
        self.target_ms = resolve_target(cfg, self.store)
        self.reward_cfg = reward_config(cfg, self.target_ms)
        if existing is None:
            with self.store.transaction() as c:
                self.store.set_meta("config", cfg.model_dump(mode="json"), c)
                self.store.set_meta("target_ms", self.target_ms, c)
                self.store.set_meta("reward", self.reward_cfg.to_dict(), c)
                self.store.set_meta("latency", latency_spec(cfg, None), c)
                self.store.set_meta("space", self.space.describe(), c)
                self.store.set_meta("created", time.time(), c)
        self.latency_spec = latency_spec(cfg, _cache_path(self.store))
        self.done: dict[str, tuple[float | None, dict[str, Any] | None]] = {}
        for t in self.store.trials():
            if t.status == "completed":
                self.done[t.arch] = (t.reward, {"accuracy": t.accuracy, "latency_ms": t.latency_ms})
            elif t.status == "failed":
                self.done.setdefault(t.arch, (None, None))

    # -- the loop
    def run(self, retry_failed: bool = False, progress: ProgressFn | None = None) -> SearchState:
        start = time.monotonic()
        budget = self.cfg.trials
        for t in self.store.trials("running"):  # in flight when the last run stopped
            self._submit(t.id, t.arch, tuple(t.tokens))
        if retry_failed:
            for t in self.store.trials("failed"):
                with self.store.transaction() as c:
                    self.store.finish_trial(t.id, "running", c, error=None, attempts=t.attempts + 1)
                self.done.pop(t.arch, None)
                self._submit(t.id, t.arch, tuple(t.tokens))
        state = self._state(budget)
        streak, converged = 0, ""
        try:
            while True:
                stop = converged or self._stop_reason(state, start)
                while not stop and self.executor.in_flight() < self.executor.capacity:
                    if not self._ask():
                        streak += 1
                        if streak >= self.cfg.max_duplicate_streak:
                            converged = stop = f"{streak} proposals in a row were already evaluated (converged?)"
                        continue
                    streak = 0
                    state = self._state(budget)
                    stop = self._stop_reason(state, start)
                if not self.executor.in_flight():
                    state.stopped_because = stop or "nothing left to run"
                    break
                for outcome in self.executor.wait():
                    self._record(outcome)
                state = self._state(budget)
                if progress:
                    progress(state)
        finally:  # also on Ctrl-C or an error: stop workers (a Ray instance the executor started)
            self.executor.shutdown()
        if progress:
            progress(state)
        return state

    def _stop_reason(self, state: SearchState, start: float) -> str:
        if self.cfg.trials is not None and state.total >= self.cfg.trials:
            return f"trial budget reached ({self.cfg.trials})"
        if self.cfg.time_budget_s is not None and time.monotonic() - start >= self.cfg.time_budget_s:
            return f"time budget reached ({self.cfg.time_budget_s:g} s)"
        return ""

    def _ask(self) -> bool:
        """Ask for one proposal; False when it was a duplicate (answered from the store, nothing run)."""
        tokens = tuple(self.strategy.ask())
        arch = self.space.decode(tokens).canonical
        if arch in self.done:
            rew, objectives = self.done[arch]
            self._tell(tokens, rew, objectives)
            self.duplicates += 1
            with self.store.transaction() as c:
                self._checkpoint(c)
            return False
        if arch in self.waiting or any(arch == a for _, a in self.in_flight.values()):
            self.waiting.setdefault(arch, []).append(tokens)
            with self.store.transaction() as c:
                self._checkpoint(c)
            return False
        with self.store.transaction() as c:
            trial_id = self.store.add_trial(arch, tokens, c)
            self._checkpoint(c)
        self._submit(trial_id, arch, tokens)
        return True

    def _submit(self, trial_id: int, arch: str, tokens: tuple[int, ...]) -> None:
        self.in_flight[trial_id] = (tokens, arch)
        self.executor.submit(TrialTask(trial_id, arch, self.latency_spec, self.cfg.proxy.model_dump(),
                                       self.cfg.seed))

    def _record(self, o: TrialOutcome) -> None:
        tokens, _ = self.in_flight.pop(o.trial_id)
        rew, objectives = None, None
        if o.status == "completed":
            try:
                rew = reward(o.accuracy, o.latency_ms, self.reward_cfg, o.params, o.macs)
                objectives = {"accuracy": o.accuracy, "latency_ms": o.latency_ms}
            except MnasError as e:
                o.status, o.error = "failed", f"reward: {e}"
        self._tell(tokens, rew, objectives)
        for dup in self.waiting.pop(o.arch, []):
            self._tell(dup, rew, objectives)
        self.done[o.arch] = (rew, objectives)
        with self.store.transaction() as c:
            self.store.finish_trial(o.trial_id, o.status, c, accuracy=o.accuracy, latency_ms=o.latency_ms,
                                    reward=rew, params=o.params, macs=o.macs, latency=o.latency,
                                    train=o.train, error=o.error, worker=o.worker, started=o.started,
                                    finished=o.finished, seconds=round(o.finished - o.started, 3))
            self._checkpoint(c)
            diag = self.strategy.diagnostics()
            if diag:
                self.store.add_diagnostics(diag, self.n_told, c)

    def _tell(self, tokens: tuple[int, ...], rew: float | None, objectives: dict[str, Any] | None) -> None:
        self.strategy.tell(tokens, rew, objectives)
        self.n_told += 1

    def _checkpoint(self, conn: Any) -> None:
        loop = {"duplicates": self.duplicates, "told": self.n_told,
                "waiting": {k: [list(t) for t in v] for k, v in self.waiting.items()}}
        self.store.save_checkpoint({"strategy": self.strategy.state_dict(), "loop": loop}, self.n_told,
                                   conn=conn)

    def _state(self, budget: int | None) -> SearchState:
        counts = self.store.counts()
        best = self.store.conn.execute(
            "SELECT id, arch, accuracy, latency_ms, reward FROM trials WHERE status = 'completed' "
            "ORDER BY reward DESC LIMIT 1").fetchone()
        return SearchState(counts["total"], counts["completed"], counts["failed"], self.duplicates,
                           dict(best) if best else None, budget)


def _merge_resumed(existing: dict[str, Any], cfg: ExperimentConfig) -> ExperimentConfig:
    """A resumed experiment keeps its stored config; only the budget may change on the command line."""
    from mnas.search.config import config_from_dict

    given = cfg.model_dump(mode="json")
    for key in given.keys() - {"trials", "time_budget_s"}:
        if given[key] != existing.get(key):
            raise MnasError(f"--resume continues the stored experiment, but '{key}' differs from it: "
                            "resume with the original config (only trials/time_budget_s may change)")
    merged = dict(existing)
    merged["trials"], merged["time_budget_s"] = cfg.trials, cfg.time_budget_s
    return config_from_dict(merged, "stored config")
