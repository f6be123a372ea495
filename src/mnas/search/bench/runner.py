"""Running strategies against a table: one search, every (strategy, seed) over a process pool, the report.

Semantics (docs/strategies.md has the reasoning): a run is the search driver's loop
(``mnas.search.loop.AskTellLoop``) with the table as its evaluator, so

* an *evaluation* is a distinct architecture (a trial of the real loop): a repeated proposal is told its
  result again and costs nothing; a run stops at its budget of evaluations, or after
  ``max_duplicate_streak`` proposals in a row that were all repeats (the driver's rule and default);
* an architecture missing from the table counts as an evaluation that failed (tell(None));
* a table with a validation accuracy (a generated one, or a CSV with a ``*_valid_accuracy`` column) tells
  the strategies that accuracy, and its reward; the metrics use the test accuracy (search on validation,
  score on test);
* strategies are told synchronously, one proposal at a time (an evaluator of capacity 1);
* a ``LatencyAware`` strategy gets an oracle that reads the table's latency (None for a missing cell); its
  queries are counted apart from the evaluations (``latency_queries_mean``), a missing cell's like any other;
* every latency a strategy learns (a query's answer, or a trained result's objectives and reward) is the
  table's times exp(``latency_noise`` x z), z standard normal, one z per cell and seed: a cell measured twice
  reads the same (the real loop caches a timing), and every strategy of one seed sees the same noise. The
  metrics use the table's own values;
* a latency query costs ``latency_cost`` trainings: each budget is reported at equal trainings (the first
  ``budget`` evaluations) and at equal total cost (the longest prefix whose evaluations plus
  ``latency_cost`` x the queries made before its last one fit in ``budget``);
* every run goes to the largest budget; smaller budgets are measured on its prefix (a strategy does not
  know its budget and the stopping rule depends only on what happened so far, so the prefix is exactly
  the shorter run).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

import numpy as np

from mnas import MnasError
from mnas.search.bench.metrics import Oracle
from mnas.search.bench.stats import p_value, summarise
from mnas.search.loop import DUPLICATE_STREAK, AskTellLoop, Proposal, Result, StopRule
from mnas.search.reward import reward
from mnas.search.strategies import STRATEGIES, make_strategy

log = logging.getLogger(__name__)

METRICS = ("reward_regret", "hv_ratio", "constrained_regret")
BASELINES = ("random", "evolution")  # every strategy is compared with these when they ran
# Provisional defaults, not measured (docs/strategies.md says from what they should be): a latency query in
# training units (about a second of onnxruntime conversion and timing against a proxy training of minutes;
# a LiteRT-like backend, 10-20 s a timing, is nearer 0.1), and the spread of repeated timings (sigma of log).
# Measured 2026-12-06 (docs/results/2026-12-06-strategy-matrix.md): one onnxruntime query of a mnasnet-cifar
# network at 32 px (configs/cifar10.yaml's latency) took 0.39-0.44 s median against 224-400 s for that
# config's 200-step proxy training on one CPU thread (two measurements), a ratio of 0.001-0.0017; LiteRT
# timings (10-20 s) or proxies trained on a GPU put it nearer 0.05 (--extra-latency-costs 0.05).
LATENCY_COST = 0.001
# The same measurements: repeated timings of one network varied by 1.5-3.4 % (CV; median 2.0-2.7 %).
LATENCY_NOISE = 0.03


def run_search(oracle: Oracle, strategy: str, seed: int, budget: int, options: dict | None = None,
               max_duplicate_streak: int = DUPLICATE_STREAK, latency_oracle: bool = True,
               latency_noise: float = 0.0) -> dict[str, Any]:
    """Rows evaluated (in order; -1 = not in the table, a failed evaluation), the number of asks, the
    latency queries made before each evaluation (cumulative), and why the run stopped."""
    table = oracle.table
    strat = make_strategy(strategy, table.space, seed=seed, **(options or {}))
    evaluations = _TableEvaluations(oracle, latency_noise, seed)
    rule = StopRule(trials=budget, max_duplicate_streak=max_duplicate_streak)
    loop = AskTellLoop(strat, lambda tokens: table.space.decode(tokens).canonical, rule,
                       latency_oracle=evaluations.measure if latency_oracle else None)
    stopped = loop.run(evaluations)
    return {"rows": evaluations.rows, "asks": loop.asked, "latency_queries": evaluations.queried,
            "stopped_because": stopped}


class _TableEvaluations:
    """The loop's evaluator on a table: one evaluation at a time, answered by a lookup."""

    capacity = 1

    def __init__(self, oracle: Oracle, noise: float = 0.0, seed: int = 0) -> None:
        self.oracle, self.table = oracle, oracle.table
        self.rows: list[int] = []  # -1: not in the table
        self.queried: list[int] = []  # latency queries before each evaluation
        self.queries = 0
        self.current: Proposal | None = None
        if noise < 0:
            raise MnasError(f"latency noise {noise}: need >= 0")
        # one draw per cell and seed, whatever the order of the measurements (a paired comparison)
        z = np.random.default_rng([seed, 0x1A7]).standard_normal(len(self.table)) if noise else None
        self.latency = self.table.latency if z is None else self.table.latency * np.exp(noise * z)

    def measure(self, candidates: list[tuple[int, ...]]) -> list[float | None]:
        """The latency oracle: the measured latency of each candidate, None for a missing cell."""
        self.queries += len(candidates)
        found = (self.table.lookup(t) for t in candidates)
        return [None if row is None else float(self.latency[row]) for row in found]

    def in_flight(self) -> int:
        return int(self.current is not None)

    def start(self, proposal: Proposal) -> None:
        found = self.table.lookup(proposal.tokens)
        self.rows.append(-1 if found is None else found)
        self.queried.append(self.queries)
        self.current = proposal

    def repeated(self, proposal: Proposal) -> None:
        pass

    def wait(self) -> list[Result]:
        proposal, self.current = self.current, None
        assert proposal is not None, "the loop waits only with an evaluation in flight"
        row = self.rows[-1]
        if row < 0:
            return [Result(proposal, None)]
        acc, lat = float(self.table.told_accuracy[row]), float(self.latency[row])
        exact = self.latency is self.table.latency
        rewards = self.oracle.rewards if self.oracle.told_rewards is None else self.oracle.told_rewards
        told = float(rewards[row]) if exact else reward(acc, lat, self.oracle.cfg)
        return [Result(proposal, told, {"accuracy": acc, "latency_ms": lat})]

    def record(self, result: Result) -> None:
        pass


# The pool's workers are forked with the oracle (a 15625-row table) already in memory, instead of
# receiving it pickled with every job.
_ORACLE: Oracle | None = None


def _init_worker(oracle: Oracle) -> None:
    global _ORACLE
    _ORACLE = oracle
    # one search per core: PPO's intra-op threads and the predictor's BLAS threads would only contend
    # (with numpy's default threads the predictor's small linear algebra spent most of its CPU time waiting)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def _job(args: tuple[str, int, int, dict, int, bool, float]) -> tuple[str, int, dict, tuple[float, float]]:
    strategy, seed, budget, options, streak, latency_oracle, noise = args
    t0, c0 = time.perf_counter(), time.process_time()
    out = run_search(_ORACLE, strategy, seed, budget, options, streak, latency_oracle, noise)  # type: ignore[arg-type]
    # CPU time as well as wall: on a machine shared with other work the wall time of a job says little
    return strategy, seed, out, (time.process_time() - c0, time.perf_counter() - t0)


def _run_all(oracle: Oracle, work: list[tuple[str, int, int, dict, int, bool, float]], jobs: int,
             progress: Callable[[int, int], None] | None) -> list[tuple[str, int, dict, tuple[float, float]]]:
    if jobs == 1:
        _init_worker(oracle)
        done = []
        for i, w in enumerate(work, 1):
            done.append(_job(w))
            if progress:
                progress(i, len(work))
        return done
    with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_init_worker,
                             initargs=(oracle,)) as pool:
        futures = [pool.submit(_job, w) for w in work]
        done = []
        for i, fut in enumerate(as_completed(futures), 1):
            done.append(fut.result())
            if progress:
                progress(i, len(work))
        return done


def bench_strategies(oracle: Oracle, strategies: Sequence[str], budgets: Sequence[int], seeds: int,
                     options: dict[str, dict] | None = None, jobs: int | None = None,
                     max_duplicate_streak: int = DUPLICATE_STREAK,
                     progress: Callable[[int, int], None] | None = None,
                     latency_oracle: bool = True, latency_cost: float = LATENCY_COST,
                     latency_noise: float = LATENCY_NOISE,
                     extra_latency_costs: Sequence[float] = ()) -> dict[str, Any]:
    """Run every strategy over seeds 0..seeds-1 to max(budgets); summarise each budget's prefix, at equal
    trainings (``budgets``) and at equal total cost (``cost_budgets``: a latency query costs
    ``latency_cost`` trainings). The same runs at other query prices (the cost is counted after the run,
    strategies never see it): ``cost_budgets_at[str(cost)]`` for each of ``extra_latency_costs``."""
    for s in strategies:
        STRATEGIES.get(s)  # an unknown name or a missing package fails here, not in a worker
    if not budgets or min(budgets) < 1 or seeds < 1:
        raise MnasError("need budgets >= 1 and seeds >= 1")
    opts = {name: dict(extra) for name, extra in (options or {}).items()}
    top = max(budgets)
    if max_duplicate_streak < 1:
        raise MnasError("need max_duplicate_streak >= 1")
    if not all(0 <= x < math.inf for x in (latency_cost, latency_noise, *extra_latency_costs)):
        raise MnasError(f"need finite --latency-cost >= 0 and --latency-noise >= 0 (and extra costs), got "
                        f"{latency_cost}, {latency_noise} and {list(extra_latency_costs)}")
    work = [(s, seed, top, opts.get(s, {}), max_duplicate_streak, latency_oracle, latency_noise)
            for s in strategies for seed in range(seeds)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    log.info("%d searches (%s; %d seeds each) to %d evaluations on %d processes", len(work),
             ", ".join(strategies), seeds, top, jobs)
    results: dict[str, dict[int, dict]] = {s: {} for s in strategies}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    walls: dict[str, float] = {s: 0.0 for s in strategies}
    t0 = time.perf_counter()
    for s, seed, out, (cpu, dt) in _run_all(oracle, work, jobs, progress):
        results[s][seed], seconds[s], walls[s] = out, seconds[s] + cpu, walls[s] + dt
    wall = time.perf_counter() - t0
    table = oracle.table
    return {
        "table": {"rows": len(table), "space_size": table.space.size, "accuracy": table.accuracy_column,
                  "latency": table.latency_column, "accuracy_scale": table.accuracy_scale,
                  "valid_accuracy": table.valid_column, "source": table.source},
        "reward": {"preset": oracle.cfg.preset, "alpha": oracle.cfg.alpha, "beta": oracle.cfg.beta,
                   "target_quantile": oracle.target_quantile, "target_ms": oracle.target_ms,
                   "best_reward": oracle.best_reward},
        "reference_point": {"latency_ms": oracle.ref[0], "error": oracle.ref[1]},
        "true_hypervolume": oracle.true_hv, "best_accuracy_under_target": oracle.best_constrained,
        "seeds": seeds, "max_duplicate_streak": max_duplicate_streak, "latency_oracle": latency_oracle, "options": opts,
        "latency_cost": latency_cost, "latency_noise": latency_noise,
        "wall_s": wall, "jobs": jobs, "cpu_s": seconds, "job_wall_s": walls,
        "budgets": {str(b): _budget_block(oracle, results, b, latency_cost) for b in sorted(set(budgets))},
        "cost_budgets": {str(b): _budget_block(oracle, results, b, latency_cost, by_cost=True)
                         for b in sorted(set(budgets))},
        "cost_budgets_at": {f"{c:g}": {str(b): _budget_block(oracle, results, b, c, by_cost=True)
                                       for b in sorted(set(budgets))} for c in extra_latency_costs}}


def cost_prefix(queried: Sequence[int], budget: float, latency_cost: float) -> int:
    """How many evaluations fit in ``budget`` trainings when each query before one costs ``latency_cost``."""
    k = 0
    while k < len(queried) and (k + 1) + latency_cost * queried[k] <= budget + 1e-9:
        k += 1
    return k


def _budget_block(oracle: Oracle, results: dict[str, dict[int, dict]], budget: int, latency_cost: float,
                  by_cost: bool = False) -> dict[str, Any]:
    """Per strategy: mean evaluations, latency queries and total cost, and each metric's summary over seeds
    on the runs' first ``budget`` evaluations (``by_cost``: the evaluations that fit in a total cost of
    ``budget``), with p-values against random and evolution when they ran too."""
    per: dict[str, dict[str, list[float]]] = {}
    block: dict[str, Any] = {}
    for s, runs in results.items():
        per[s] = {m: [] for m in METRICS}
        evals, queries = [], []
        for seed in sorted(runs):
            queried = runs[seed]["latency_queries"]
            n = cost_prefix(queried, budget, latency_cost) if by_cost else budget
            rows = runs[seed]["rows"][:n]
            evals.append(len(rows))
            queries.append(queried[len(rows) - 1] if rows else 0)
            for m, v in oracle.metrics(rows).items():
                per[s][m].append(v)
        block[s] = {"evaluations_mean": float(np.mean(evals)), "latency_queries_mean": float(np.mean(queries)),
                    "total_cost_mean": float(np.mean(evals) + latency_cost * np.mean(queries))}
    for s in results:
        for m in METRICS:
            block[s][m] = summarise(per[s][m])
            for base in BASELINES:
                if base in per and s != base:
                    block[s][m][f"p_vs_{base}"] = p_value(per[s][m], per[base][m],
                                                          "greater" if m == "hv_ratio" else "less")
    return block
