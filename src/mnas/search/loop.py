"""The ask/tell loop every search runs: the driver's (trials on an executor, recorded in a store) and the
tabular benchmark's (a table's answers), so a benchmark result is a statement about the real loop.

The loop owns the bookkeeping; an ``Evaluator`` owns how an evaluation runs and what is written where.

* Asking: while the evaluator has room and no stopping rule holds, the strategy is asked for one
  proposal at a time.
* Duplicates: an architecture is evaluated once; proposals are the same architecture when their ``key``
  (the canonical string) is. A proposal of an architecture already evaluated is told the stored result
  again at once; one of an architecture in flight is told when that evaluation finishes. Neither is a
  trial.
* Failures: a failed evaluation is told reward None, and so is every later proposal of it.
* Counting: ``trials`` counts the evaluations started (a failed one too), including those of earlier runs
  of the same search; ``told`` counts tells (the x axis of diagnostics); ``duplicates`` the proposals
  answered from a finished evaluation.
* Stopping (``StopRule``): the trial budget, the time budget, or ``max_duplicate_streak`` proposals in a
  row that started nothing (a strategy that only repeats itself has converged). The loop then waits for
  what is in flight, tells it, and returns why it stopped.
* The latency oracle: a strategy that is ``LatencyAware`` is given the evaluator's oracle when the loop is
  built, and only then (it is not part of the strategy's state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from mnas.search.strategies.base import LatencyOracle, Strategy, Tokens, give_latency_oracle

Outcome = tuple["float | None", "dict[str, Any] | None"]  # (reward, objectives) of a finished evaluation
DUPLICATE_STREAK = 200  # the default of StopRule.max_duplicate_streak (and of the search config's)


@dataclass(frozen=True)
class Proposal:
    tokens: Tokens
    key: str  # the architecture: proposals with one key are one evaluation


@dataclass
class Result:
    """A finished evaluation; ``detail`` is the evaluator's own record of it (the driver's ``Trial``)."""

    proposal: Proposal
    reward: float | None  # None: the evaluation failed
    objectives: dict[str, Any] | None = None
    detail: Any = None


@dataclass(frozen=True)
class StopRule:
    trials: int | None = None  # evaluations started, counting earlier runs'
    time_budget_s: float | None = None  # wall time of one ``run``
    max_duplicate_streak: int = DUPLICATE_STREAK  # proposals in a row that started nothing


class Evaluator(Protocol):
    """Where the loop's proposals are evaluated. Every hook is called after the loop's own bookkeeping, so
    an evaluator that saves the loop's or the strategy's state saves it with the step it belongs to."""

    capacity: int  # evaluations that may be in flight at once

    def in_flight(self) -> int: ...

    def start(self, proposal: Proposal) -> None:
        """Begin a new evaluation (already counted as a trial)."""

    def repeated(self, proposal: Proposal) -> None:
        """A proposal that started nothing: told already, or parked until its architecture finishes."""

    def wait(self) -> Iterable[Result]:
        """At least one finished evaluation; the loop tells each before reading the next."""

    def record(self, result: Result) -> None:
        """A finished evaluation after the strategy was told it (and its parked duplicates)."""


class AskTellLoop:
    """One search's bookkeeping around ``strategy`` (see the module's docstring); ``key`` names the
    architecture of a proposal's tokens, ``rule`` says when to stop asking."""

    def __init__(self, strategy: Strategy, key: Callable[[Tokens], str], rule: StopRule, trials: int = 0,
                 done: dict[str, Outcome] | None = None, latency_oracle: LatencyOracle | None = None) -> None:
        """``trials`` started and ``done`` (key -> outcome of a finished evaluation) by earlier runs."""
        self.strategy, self.key, self.rule = strategy, key, rule
        self.trials = trials
        self.done: dict[str, Outcome] = dict(done or {})
        self.in_flight: dict[str, Tokens] = {}
        self.waiting: dict[str, list[Tokens]] = {}  # key in flight -> its duplicate proposals
        self.duplicates = self.told = self.asked = self.streak = 0
        if latency_oracle is not None:
            give_latency_oracle(strategy, latency_oracle)

    # -- what a checkpoint keeps (the format of the driver's "loop" entry)
    def state_dict(self) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "told": self.told,
                "waiting": {k: [list(t) for t in v] for k, v in self.waiting.items()}}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.duplicates = d.get("duplicates", 0)
        self.told = d.get("told", 0)
        self.waiting = {k: [tuple(t) for t in v] for k, v in d.get("waiting", {}).items()}

    # -- the loop
    def run(self, evaluator: Evaluator, progress: Callable[[], None] | None = None,
            started: float | None = None) -> str:
        """Ask while ``evaluator`` has room and no stopping rule holds, tell what finishes (then
        ``progress``), until a rule holds and nothing is in flight. Returns why it stopped.
        ``started``: when the time budget began (``time.monotonic()``; default now). A streak of repeats
        counts within one run (it is not saved in checkpoints)."""
        started = time.monotonic() if started is None else started
        self.streak = 0
        while True:
            stop = self.stop_reason(started)
            while not stop and evaluator.in_flight() < evaluator.capacity:
                proposal, new = self.ask()
                if new:
                    evaluator.start(proposal)
                else:
                    evaluator.repeated(proposal)
                stop = self.stop_reason(started)
            if not evaluator.in_flight():
                return stop or "nothing left to run"
            for result in evaluator.wait():
                self.tell(result)
                evaluator.record(result)
            if progress:
                progress()

    def stop_reason(self, started: float) -> str:
        """Why the loop must not ask again ("" while it may)."""
        rule = self.rule
        if self.streak >= rule.max_duplicate_streak:
            return f"{self.streak} proposals in a row were already evaluated (converged?)"
        if rule.trials is not None and self.trials >= rule.trials:
            return f"trial budget reached ({rule.trials})"
        if rule.time_budget_s is not None and time.monotonic() - started >= rule.time_budget_s:
            return f"time budget reached ({rule.time_budget_s:g} s)"
        return ""

    def ask(self) -> tuple[Proposal, bool]:
        """One proposal from the strategy, and whether it is a new evaluation (then counted as a trial and in
        flight); otherwise it repeats one finished (told its outcome now) or in flight (told when that one
        finishes)."""
        tokens = tuple(self.strategy.ask())
        proposal = Proposal(tokens, self.key(tokens))
        self.asked += 1
        if proposal.key in self.done:
            self._tell(tokens, *self.done[proposal.key])
            self.duplicates += 1
        elif proposal.key in self.in_flight or proposal.key in self.waiting:
            self.waiting.setdefault(proposal.key, []).append(tokens)
        else:
            self.streak = 0
            self.trials += 1
            self.in_flight[proposal.key] = tokens
            return proposal, True
        self.streak += 1
        return proposal, False

    def resume(self, proposal: Proposal) -> None:
        """An evaluation started before (by an earlier run, or a failed one retried) in flight again: not a
        new trial; its outcome replaces any stored one."""
        self.done.pop(proposal.key, None)
        self.in_flight[proposal.key] = proposal.tokens

    def tell(self, result: Result) -> None:
        """A finished evaluation: told to the strategy for its proposal and each duplicate parked on it."""
        key = result.proposal.key
        self.in_flight.pop(key, None)
        self._tell(result.proposal.tokens, result.reward, result.objectives)
        for dup in self.waiting.pop(key, []):
            self._tell(dup, result.reward, result.objectives)
        self.done[key] = (result.reward, result.objectives)

    def _tell(self, tokens: Tokens, reward: float | None, objectives: dict[str, Any] | None) -> None:
        self.strategy.tell(tokens, reward, objectives)
        self.told += 1
