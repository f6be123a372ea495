"""Latency queries paid for and measured with noise in the strategy benchmark."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mnas import MnasError
from mnas.cli import main
from mnas.search.bench import Oracle, bench_strategies, load_table, synthetic_table
from mnas.search.bench.runner import LATENCY_COST, LATENCY_NOISE, _TableEvaluations, cost_prefix
from mnas.search.loop import Proposal


@pytest.fixture(autouse=True)
def one_thread():
    """As the benchmark's workers run (the predictor's small linear algebra only waits for more threads)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    return Oracle.build(load_table(synthetic_table(tmp_path_factory.mktemp("t") / "s.csv", seed=2, missing=0.3)))


def test_the_prefix_at_a_total_cost_pays_for_the_queries_before_each_training():
    queried = [0, 5, 10, 30]  # queries made before each of four evaluations (cumulative)
    assert [cost_prefix(queried, b, 0.1) for b in (0.5, 1, 2.5, 3.9, 4, 6.9, 7, 100)] == [0, 1, 2, 2, 3, 3, 4, 4]
    assert cost_prefix(queried, 3, 0.0) == 3  # free queries: the prefix is the budget's


def test_a_measured_latency_is_noisy_the_same_for_a_cell_and_a_seed_and_what_the_strategy_is_told(oracle):
    table = oracle.table
    cells = [table.space.encode(table.space.parse(a)) for a in table.archs[:50]]
    exact = np.array(_TableEvaluations(oracle).measure(cells))
    assert np.allclose(exact, table.latency[:50])
    noisy = _TableEvaluations(oracle, noise=0.05, seed=3)
    first = np.array(noisy.measure(cells))
    spread = np.log(first / exact)
    assert 0.02 < spread.std() < 0.08 and noisy.queries == 50
    assert noisy.measure(cells[:5]) == list(first[:5])  # measured again: the same reading
    assert np.array_equal(_TableEvaluations(oracle, noise=0.05, seed=3).measure(cells), first)  # paired seeds
    assert not np.array_equal(_TableEvaluations(oracle, noise=0.05, seed=4).measure(cells), first)
    noisy.start(Proposal(cells[0], "a"))
    (result,) = noisy.wait()
    assert result.objectives["latency_ms"] == first[0] and result.reward != pytest.approx(float(oracle.rewards[0]))


def test_results_at_equal_total_cost_charge_the_queries(oracle):
    rep = bench_strategies(oracle, ["evolution", "predictor"], [20], seeds=2, jobs=1,
                           options={"predictor": {"initial": 5, "candidates": 40}}, latency_cost=0.05,
                           latency_noise=0.03)
    assert rep["latency_cost"] == 0.05 and rep["latency_noise"] == 0.03
    trainings, cost = rep["budgets"]["20"], rep["cost_budgets"]["20"]
    assert trainings["evolution"] == cost["evolution"]  # no queries: the same runs, the same numbers
    pred, pred_cost = trainings["predictor"], cost["predictor"]
    assert pred["latency_queries_mean"] > 20 and pred["total_cost_mean"] > 20  # the queries are paid for
    assert pred_cost["evaluations_mean"] < 20 and pred_cost["total_cost_mean"] <= 20
    assert pred_cost["reward_regret"]["p_vs_evolution"] is not None


def test_the_same_runs_are_reported_at_other_query_prices(oracle):
    rep = bench_strategies(oracle, ["evolution", "predictor"], [20], seeds=2, jobs=1,
                           options={"predictor": {"initial": 5, "candidates": 40}}, latency_cost=0.05,
                           extra_latency_costs=[0.0, 0.05, 0.5])
    at = rep["cost_budgets_at"]
    assert set(at) == {"0", "0.05", "0.5"}
    def runs(block):  # what the runs found, apart from the price charged for them
        return {s: {k: v for k, v in e.items() if k != "total_cost_mean"} for s, e in block.items()}

    assert runs(at["0"]["20"]) == runs(rep["budgets"]["20"])  # free queries: equal cost is equal trainings
    assert at["0.05"]["20"] == rep["cost_budgets"]["20"]  # the main price, counted again
    evals = [at[c]["20"]["predictor"]["evaluations_mean"] for c in ("0", "0.05", "0.5")]
    assert evals[0] == 20 and evals[0] > evals[1] > evals[2]  # a dearer query leaves fewer trainings
    with pytest.raises(Exception, match="latency-cost"):
        bench_strategies(oracle, ["evolution"], [5], seeds=1, jobs=1, extra_latency_costs=[float("nan")])


def test_cli_reports_the_cost_and_noise_it_used(oracle, tmp_path, capsys):
    path = synthetic_table(tmp_path / "s.csv", seed=1, missing=0.5)
    args = ["bench", "strategies", "--table", str(path), "--budget", "10", "--seeds", "2", "--strategies",
            "evolution,random-latency", "--jobs", "1"]
    assert main([*args, "--latency-cost", "0.5", "--latency-noise", "0", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["latency_cost"] == 0.5 and rep["latency_noise"] == 0
    assert rep["cost_budgets"]["10"]["random-latency"]["total_cost_mean"] <= 10
    assert main([*args, "--json"]) == 0  # the provisional defaults
    rep = json.loads(capsys.readouterr().out)
    assert (rep["latency_cost"], rep["latency_noise"]) == (LATENCY_COST, LATENCY_NOISE)
    assert main([*args]) == 0
    assert "total cost 10 trainings" in capsys.readouterr().out
    assert main(["bench", "strategies", "--help"]) == 0
    help_text = re.sub(r"[\s│]+", " ", capsys.readouterr().out)  # the help's frame and wrapping removed
    assert f"default {LATENCY_COST}," in help_text and f"default {LATENCY_NOISE}," in help_text
    assert main([*args, "--latency-cost", "-1"]) == 2


@pytest.mark.parametrize("option", ["--latency-cost", "--latency-noise"])
def test_an_infinite_price_or_noise_is_one_line_before_anything_runs(oracle, option, tmp_path, capsys):
    """As every number a config takes (issue 30): inf passed the options' >= 0 check and the report held
    Infinity and NaN, which strict JSON readers refuse."""
    path = synthetic_table(tmp_path / "s.csv", seed=1)
    args = ["bench", "strategies", "--table", str(path), "--budget", "5", "--seeds", "1", "--strategies", "random"]
    assert main([*args, option, "inf", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "finite" in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(MnasError, match="finite"):
        bench_strategies(oracle, ["random"], [5], 1, extra_latency_costs=[float("inf")])
