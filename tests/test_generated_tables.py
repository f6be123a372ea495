"""Benchmark tables generated at run time from a seed, in families of landscapes no setting was tuned on, and
tables that are searched on validation accuracy and scored on test accuracy."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from mnas import MnasError
from mnas.cli import main
from mnas.search.bench import FAMILIES, Oracle, generated_names, generated_table, load_table, open_table, run_search
from mnas.search.bench.runner import _TableEvaluations
from mnas.search.loop import Proposal
from mnas.space.nb201 import Nb201Space

S = Nb201Space()


@pytest.fixture(scope="module")
def tables():
    return {family: generated_table(f"generated:{family}:7") for family in FAMILIES}


def _near_best(acc):
    return float((acc >= acc.max() - 0.01).mean())


def _top_gap(acc):
    """How far the best stands above the top percent, in units of the top percent's distance from the median."""
    q99, q50 = np.quantile(acc, [0.99, 0.5])
    return float((acc.max() - q99) / (q99 - q50))


def test_a_generated_table_is_the_same_for_its_name_and_another_for_another_seed():
    a, b = generated_table("generated:missing:3"), generated_table("generated:missing:3")
    assert a.archs == b.archs and np.array_equal(a.accuracy, b.accuracy) and np.array_equal(a.latency, b.latency)
    assert np.array_equal(a.valid_accuracy, b.valid_accuracy) and a.source == b.source
    c = generated_table("generated:missing:4")
    assert c.source["seed"] == 4 and not np.array_equal(c.row_of, a.row_of)
    # its rows are the cells their strings name
    for row in (0, len(a) // 2, len(a) - 1):
        assert a.lookup(S.encode(S.parse(a.archs[row]))) == row


def test_families_differ_in_the_sign_of_the_accuracy_latency_correlation(tables):
    rho = {f: spearmanr(t.accuracy, t.latency)[0] for f, t in tables.items()}
    assert rho["positive"] > 0.3 and rho["negative"] < -0.3 and abs(rho["independent"]) < 0.05
    assert np.sign(tables["positive"].source["rho"]) == 1 and tables["independent"].source["rho"] == 0


def test_families_differ_in_the_shape_of_the_top(tables):
    heavy, flat, normal = tables["heavy-tail"].accuracy, tables["flat-top"].accuracy, tables["negative"].accuracy
    assert _top_gap(heavy) > 3 * _top_gap(normal)  # a few cells far above the rest
    assert _near_best(flat) > 0.05 > 0.01 > _near_best(heavy)  # a plateau of near-best cells
    assert _near_best(normal) < 0.01


def test_only_the_missing_family_misses_cells_and_a_whole_op_pair_goes(tables):
    for family, t in tables.items():
        frac = 1 - len(t) / S.size
        if family == "missing":
            assert 0.2 <= frac <= 0.4 and frac == pytest.approx(t.source["missing"], abs=1e-3)
            pair = t.source["missing_pair"]
            assert not any(all(S.parse(a).ops[int(e[4:])] == op for e, op in pair.items()) for a in t.archs)
        else:
            assert frac == 0


def test_each_family_puts_t_at_its_own_latency_quantile_unless_told_otherwise(tables):
    quantiles = set()
    for t in tables.values():
        oracle = Oracle.build(t)
        q = t.source["target_quantile"]
        quantiles.add(q)
        assert oracle.target_quantile == q and (t.latency <= oracle.target_ms).mean() == pytest.approx(q, abs=0.01)
    assert len(quantiles) >= 4
    assert Oracle.build(tables["independent"], target_quantile=0.5).target_ms == \
        pytest.approx(np.median(tables["independent"].latency))


def test_generated_names_cover_different_families_from_one_seed():
    names = generated_names(10, 8)
    assert len(set(names)) == 8 and len({n.split(":")[1] for n in names[:6]}) == 6
    assert generated_table("generated:12").source["family"] == list(FAMILIES)[12 % len(FAMILIES)]
    for bad in ("generated:", "generated:x", "generated:nope:3", "generated:positive:-1", "generated:a:b:3"):
        with pytest.raises(MnasError, match="generated:FAMILY:SEED"):
            open_table(bad)


def test_a_strategy_is_told_the_validation_accuracy_and_scored_on_test(tables):
    t = tables["flat-top"]
    oracle = Oracle.build(t)
    assert not np.allclose(t.valid_accuracy, t.accuracy)
    ev = _TableEvaluations(oracle)
    cell = S.encode(S.parse(t.archs[5]))
    ev.start(Proposal(cell, t.archs[5]))
    (result,) = ev.wait()
    assert result.objectives["accuracy"] == t.valid_accuracy[5] != t.accuracy[5]
    assert result.reward == oracle.told_rewards[5] != oracle.rewards[5]
    # the regret is the test reward's: finding row 5 alone scores its test reward
    assert oracle.metrics([5])["reward_regret"] == pytest.approx(oracle.best_reward - oracle.rewards[5])


def test_a_csv_with_a_validation_column_is_searched_on_it(tmp_path):
    path = tmp_path / "vt.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "x_valid_accuracy", "x_test_accuracy", "x_latency_ms"])
        w.writerow([S.decode((0,) * 6).canonical, 91.0, 89.0, 2.0])
        w.writerow([S.decode((1,) * 6).canonical, 85.0, 93.0, 3.0])
    t = load_table(path)
    assert t.accuracy_column == "x_test_accuracy" and t.valid_column == "x_valid_accuracy"
    assert list(t.accuracy) == [0.89, 0.93] and list(t.valid_accuracy) == [0.91, 0.85]
    plain = load_table(path, accuracy="x_valid_accuracy", valid_accuracy="")
    assert plain.valid_accuracy is None and list(plain.told_accuracy) == [0.91, 0.85]


def test_the_cli_runs_strategies_on_a_generated_table_and_names_its_family(capsys):
    rc = main(["bench", "strategies", "--table", "generated:negative:3", "--budget", "10,20", "--seeds", "1",
               "--strategies", "evolution,evolution-latency", "--jobs", "1", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    source = rep["table"]["source"]
    assert source == generated_table("generated:negative:3").source
    assert source["family"] == "negative" and source["seed"] == 3 and source["rho"] < 0
    assert {"landscape", "tail", "missing", "valid_noise", "version"} <= set(source)
    assert rep["reward"]["target_quantile"] == source["target_quantile"]
    assert rep["table"]["valid_accuracy"] == "generated_valid_accuracy"
    assert rep["budgets"]["20"]["evolution-latency"]["latency_queries_mean"] > 0
    assert main(["bench", "strategies", "--table", "generated:negative:3", "--accuracy", "x"]) == 2
    assert "fixed columns" in capsys.readouterr().err


def test_run_search_on_a_table_with_missing_cells_fails_them(tables):
    oracle = Oracle.build(tables["missing"])
    out = run_search(oracle, "random", seed=0, budget=60)
    assert len(out["rows"]) == 60 and -1 in out["rows"]  # about a third of the cells are missing


def test_the_benchmark_script_runs_generated_tables_and_writes_both_cost_views(tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "strategy_tables.py"
    md = tmp_path / "tables.md"
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(tmp_path), "--tables", "generated:heavy-tail:4",
                                      "--seeds", "1", "--budgets", "5,10", "--strategies", "random,evolution",
                                      "--jobs", "1", "--markdown", str(md)])
    runpy.run_path(str(script), run_name="__main__")  # one seed: no p-values, which the printing must survive
    rep = json.loads((tmp_path / "generated-heavy-tail-4.json").read_text())
    assert rep["table"]["source"]["family"] == "heavy-tail" and rep["seeds"] == 1
    text = md.read_text()
    assert "family heavy-tail, seed 4" in text and "| trainings | strategy |" in text and "| total cost |" in text
    assert "generated:heavy-tail:4" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(tmp_path), "--tables", "nope"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(script), run_name="__main__")
    assert stop.value.code == 2


def test_the_report_gives_a_jobs_cpu_time_apart_from_its_wall_time(tables, monkeypatch):
    """On a busy machine a job waits for the CPU: its wall time is not what it cost."""
    import time

    from mnas.search.bench import runner

    def waiting_search(*args, **kwargs):
        time.sleep(0.3)  # wall time, no CPU
        return {"rows": [0], "asks": 1, "latency_queries": [0], "stopped_because": "budget"}

    monkeypatch.setattr(runner, "run_search", waiting_search)
    rep = runner.bench_strategies(Oracle.build(tables["independent"]), ["random"], [1], seeds=1, jobs=1)
    assert rep["job_wall_s"]["random"] >= 0.3 > 0.1 > rep["cpu_s"]["random"]
