"""The one ask/tell loop (mnas.search.loop): duplicates, failures and the stopping rule with a scripted
strategy, and the search driver and the tabular benchmark going through it alike."""

import json
import time

import pytest

from mnas.search.bench import Oracle, load_table, run_search, synthetic_table
from mnas.search.config import config_from_dict
from mnas.search.driver import Search, claim_experiment
from mnas.search.loop import AskTellLoop, Proposal, Result, StopRule
from mnas.space.nb201 import Nb201Space
from mnas.store import Trial, TrialStatus

SPACE = Nb201Space()


class Scripted:
    """Proposes the given tokens in order and records every tell."""

    name = "scripted"

    def __init__(self, proposals):
        self.proposals, self.told = list(proposals), []

    def ask(self):
        return self.proposals.pop(0)

    def tell(self, tokens, reward, objectives=None):
        self.told.append((tokens, reward))


class Answers:
    """An evaluator of ``capacity``: finishes the oldest evaluation first; reward = first token, a proposal
    whose first token is 0 fails."""

    def __init__(self, capacity=1):
        self.capacity, self.queue, self.started, self.repeats, self.recorded = capacity, [], [], [], []

    def in_flight(self):
        return len(self.queue)

    def start(self, proposal):
        self.started.append(proposal.tokens)
        self.queue.append(proposal)

    def repeated(self, proposal):
        self.repeats.append(proposal.tokens)

    def wait(self):
        p = self.queue.pop(0)
        return [Result(p, None if p.tokens[0] == 0 else float(p.tokens[0]))]

    def record(self, result):
        self.recorded.append(result.proposal.tokens)


def key(tokens):
    return "-".join(map(str, tokens))


A, B, C, F = (1,), (2,), (3,), (0,)  # F fails


def test_a_repeat_of_a_finished_evaluation_is_told_its_result_again_and_is_no_trial():
    strat, ev = Scripted([A, B, A, F, F, C]), Answers()
    loop = AskTellLoop(strat, key, StopRule(trials=4))
    assert loop.run(ev) == "trial budget reached (4)"
    assert ev.started == [A, B, F, C] and ev.repeats == [A, F] and ev.recorded == [A, B, F, C]
    assert strat.told == [(A, 1.0), (B, 2.0), (A, 1.0), (F, None), (F, None), (C, 3.0)]  # a failure stays one
    assert loop.trials == 4 and loop.asked == 6 and loop.duplicates == 2 and loop.told == 6


def test_a_repeat_of_an_evaluation_in_flight_waits_for_its_result():
    strat, ev = Scripted([A, A, B, A]), Answers(capacity=3)
    loop = AskTellLoop(strat, key, StopRule(trials=2))
    assert loop.run(ev) == "trial budget reached (2)"
    assert ev.started == [A, B] and ev.repeats == [A]
    # A's duplicate is told right after A, before B finishes; it was parked, not answered: no duplicate
    assert strat.told == [(A, 1.0), (A, 1.0), (B, 2.0)] and loop.duplicates == 0
    assert strat.proposals == [A]  # no ask past the budget


def test_a_streak_of_repeats_stops_the_loop_and_a_new_proposal_resets_it():
    strat = Scripted([A, A, A, B, A, A, A, C])
    loop = AskTellLoop(strat, key, StopRule(trials=10, max_duplicate_streak=3))
    assert loop.run(Answers()) == "3 proposals in a row were already evaluated (converged?)"
    assert strat.proposals == [C] and loop.trials == 2 and loop.streak == 3


def test_time_budget_and_the_loop_state_round_trip():
    loop = AskTellLoop(Scripted([A] * 5), key, StopRule(time_budget_s=10))
    assert loop.run(Answers(), started=time.monotonic() - 10) == "time budget reached (10 s)"
    assert loop.trials == 0
    ev, strat = Answers(capacity=2), Scripted([A, A])
    loop = AskTellLoop(strat, key, StopRule(trials=1))
    loop.ask(), loop.ask()
    state = json.loads(json.dumps(loop.state_dict()))
    assert state == {"duplicates": 0, "told": 0, "waiting": {"1": [[1]]}}  # the driver's checkpoint format
    twin = AskTellLoop(strat, key, StopRule(trials=1), trials=1)
    twin.load_state_dict(state)
    twin.resume(Proposal(A, "1"))  # a trial that was running when the process stopped
    twin.tell(Result(Proposal(A, "1"), 1.0))
    assert strat.told == [(A, 1.0), (A, 1.0)] and twin.told == 2 and not twin.waiting
    assert twin.stop_reason(time.monotonic()) == "trial budget reached (1)"


def test_the_benchmark_stops_at_a_streak_of_repeats_and_a_shorter_run_is_its_prefix(tmp_path):
    oracle = Oracle.build(load_table(synthetic_table(tmp_path / "s.csv", seed=2, missing=0.2)))
    short = run_search(oracle, "evolution", seed=0, budget=30, max_duplicate_streak=2)
    long = run_search(oracle, "evolution", seed=0, budget=400, max_duplicate_streak=2)
    assert short["stopped_because"] == "trial budget reached (30)" and long["rows"][:30] == short["rows"]
    assert "2 proposals in a row" in long["stopped_because"] and 30 < len(long["rows"]) < 400
    assert -1 in long["rows"]  # missing cells are failed evaluations


class TableExecutor:
    """Trials answered from a benchmark table, as the driver's executor: a missing cell fails."""

    capacity = 1

    def __init__(self, table):
        self.table, self.queue = table, []

    def submit(self, job):
        self.queue.append(job)

    def in_flight(self):
        return len(self.queue)

    def wait(self, timeout=None):
        job = self.queue.pop(0)
        row = self.table.lookup(SPACE.encode(SPACE.parse(job.arch)))
        if row is None:
            return [Trial(job.trial_id, job.arch, TrialStatus.FAILED, error="not in the table", worker="table")]
        return [Trial(job.trial_id, job.arch, TrialStatus.COMPLETED, accuracy=float(self.table.accuracy[row]),
                      latency_ms=float(self.table.latency[row]), worker="table", started=0.0, finished=1.0)]

    def shutdown(self):
        pass


@pytest.mark.parametrize("strategy,options,seed,streak,stop", [
    ("evolution", {"population_size": 5, "sample_size": 3}, 1, 200, "trial budget reached (40)"),
    ("ppo-paper", {"batch_size": 5, "lr": 0.05}, 0, 15, "15 proposals in a row"),  # converges
])
def test_the_driver_and_the_benchmark_run_the_same_loop(tmp_path, strategy, options, seed, streak, stop):
    """One strategy and seed on one table (a fifth of it missing: failed trials) through the search driver,
    with the table as its executor, and through the benchmark: the same trials in the same order after the
    same asks (repeats included), stopped for the same reason."""
    oracle = Oracle.build(load_table(synthetic_table(tmp_path / "s.csv", seed=4, missing=0.2)))
    bench = run_search(oracle, strategy, seed=seed, budget=40, options=options, max_duplicate_streak=streak)
    cfg = config_from_dict({"name": "table", "seed": seed, "space": "nb201", "trials": 40, "references": False,
                            "live_view": False, "max_duplicate_streak": streak,
                            "strategy": {"name": strategy, "settings": options},
                            "reward": {"preset": "soft", "target_ms": oracle.target_ms}})
    store, cfg = claim_experiment(cfg, tmp_path / "run")
    with Search(store, cfg, oracle.target_ms, TableExecutor(oracle.table)) as search:
        state = search.run()
        rows = [oracle.table.lookup(tuple(t.tokens)) for t in store.trials()]
        assert [-1 if r is None else r for r in rows] == bench["rows"]
        assert search.loop.asked == bench["asks"] > len(rows) and state.duplicates > 0
        assert stop in state.stopped_because == bench["stopped_because"] and state.failed == rows.count(None) > 0
        assert store.latest_checkpoint()["strategy"]["counts"]["asked"] == bench["asks"]
    again = run_search(oracle, strategy, seed=seed, budget=40, options=options, max_duplicate_streak=streak)
    assert again == bench  # deterministic per seed
