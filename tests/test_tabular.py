import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mnas import MnasError
from mnas.cli import main
from mnas.search.bench import (Oracle, bench_strategies, hypervolume_2d, load_table, permuted_table, run_search,
                               synthetic_table)
from mnas.space.nb201 import Nb201Space
from mnas.testing import install_plugin, plugins_on_path, run_cli

NB201 = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "nb201_cifar10_pixel3.csv.gz"
S = Nb201Space()


def _cell(*tok):
    return S.decode(tok).canonical


@pytest.fixture()
def tiny(tmp_path):
    """Four cells: a (1 ms, 80 %), b (2 ms, 90 %), c (3 ms, 85 %, dominated by b), d (4 ms, 95 %)."""
    rows = [(_cell(0, 0, 0, 0, 0, 0), 80, 1.0), (_cell(1, 0, 0, 0, 0, 0), 90, 2.0),
            (_cell(2, 0, 0, 0, 0, 0), 85, 3.0), (_cell(3, 0, 0, 0, 0, 0), 95, 4.0)]
    path = tmp_path / "tiny.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "x_accuracy", "x_latency_ms"])
        for i, r in enumerate(rows):
            w.writerow([i, *r])
    return path


def test_nb201_space_round_trip():
    text = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    arch = S.parse(text)
    assert arch.canonical == text and S.encode(arch) == (4, 2, 1, 2, 1, 1)
    assert S.decode(S.encode(arch)) == arch and S.size == 15625
    for bad in ["|none~0|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"]:
        with pytest.raises(MnasError):
            S.parse(bad)


def test_hypervolume_by_hand():
    # points (1, 0.2), (2, 0.1) with ref (4, 0.3): strips (4-1)*(0.3-0.2) + (4-2)*(0.2-0.1) = 0.5
    assert hypervolume_2d([1, 2], [0.2, 0.1], (4, 0.3)) == pytest.approx(0.5)
    assert hypervolume_2d([2, 1], [0.1, 0.2], (4, 0.3)) == pytest.approx(0.5)  # order does not matter
    assert hypervolume_2d([1, 2, 3], [0.2, 0.1, 0.15], (4, 0.3)) == pytest.approx(0.5)  # dominated adds 0
    assert hypervolume_2d([1, 1, 2, 2], [0.2, 0.25, 0.1, 0.1], (4, 0.3)) == pytest.approx(0.5)  # ties
    assert hypervolume_2d([5, 1], [0.1, 0.3], (4, 0.3)) == 0.0  # outside the reference box
    assert hypervolume_2d([], [], (4, 0.3)) == 0.0


def test_hypervolume_matches_a_grid_count():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)
    grid = (np.arange(400) + 0.5) / 400  # cell centres of a 400 x 400 grid over [0, 1]^2
    ga, gb = np.meshgrid(grid, grid, indexing="ij")
    dominated = ((a[:, None, None] <= ga) & (b[:, None, None] <= gb)).any(0)
    assert hypervolume_2d(a, b, (1.0, 1.0)) == pytest.approx(dominated.mean(), abs=5e-3)


def test_gzip_table_reads_like_the_csv(tiny, tmp_path):
    packed = tmp_path / "tiny.csv.gz"
    packed.write_bytes(gzip.compress(tiny.read_bytes()))
    a, b = load_table(tiny), load_table(packed)
    assert a.archs == b.archs and (a.accuracy == b.accuracy).all() and (a.latency == b.latency).all()
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(tiny.read_bytes())[:40])
    with pytest.raises(MnasError, match="cannot be read"):
        load_table(broken)


def test_metrics_on_a_tiny_table(tiny):
    table = load_table(tiny)
    assert table.accuracy_scale == 100 and table.accuracy[1] == pytest.approx(0.9)
    oracle = Oracle.build(table, "hard", target_quantile=0.5)  # T = 2.5 ms
    assert oracle.target_ms == pytest.approx(2.5)
    # hard reward: a 0.8, b 0.9, c 0.85*2.5/3, d 0.95*2.5/4 -> best 0.9 (b)
    assert oracle.best_reward == pytest.approx(0.9)
    assert oracle.best_constrained == pytest.approx(0.9)
    err = 1 - table.accuracy
    assert oracle.ref == (4.0, pytest.approx(float(np.median(err))))
    m = oracle.metrics([table.lookup(S.parse(table.archs[0]) and (0, 0, 0, 0, 0, 0))])
    assert m["reward_regret"] == pytest.approx(0.1) and m["constrained_regret"] == pytest.approx(0.1)
    # ref error = median(0.2, 0.1, 0.15, 0.05) = 0.125: only b and d lie inside; front area
    full = (4 - 2) * (0.125 - 0.1) + (4 - 4) * 0.1
    assert oracle.true_hv == pytest.approx(full)
    assert oracle.metrics([1, 3])["hv_ratio"] == pytest.approx(1.0)
    assert oracle.metrics([0])["hv_ratio"] == 0.0
    assert oracle.metrics([-1])["reward_regret"] > 0  # nothing found: worst case


def test_duplicates_are_free_and_missing_cells_fail(tiny):
    oracle = Oracle.build(load_table(tiny))
    out = run_search(oracle, "random", seed=0, budget=10)
    assert len(out["rows"]) == 10 and out["asks"] >= 10
    assert sum(r >= 0 for r in out["rows"]) <= 4  # the table has 4 cells; the rest failed


def test_bench_on_a_synthetic_table(tmp_path):
    path = synthetic_table(tmp_path / "synth.csv", seed=3, missing=0.3)
    oracle = Oracle.build(load_table(path))
    rep = bench_strategies(oracle, ["random", "evolution", "predictor"], [20, 40], seeds=3, jobs=1)
    block = rep["budgets"]["40"]
    assert set(block) == {"random", "evolution", "predictor"}
    assert 0 <= block["random"]["hv_ratio"]["mean"] <= 1
    assert block["evolution"]["reward_regret"]["p_vs_random"] is not None
    assert block["predictor"]["reward_regret"]["p_vs_evolution"] is not None
    assert "p_vs_evolution" not in block["evolution"]["reward_regret"]
    # only a strategy that takes a latency oracle queries it; queries are counted apart from evaluations
    assert block["random"]["latency_queries_mean"] == 0 < block["predictor"]["latency_queries_mean"]
    assert block["predictor"]["evaluations_mean"] == 40
    # a budget-20 search is the prefix of the budget-40 one
    assert rep["budgets"]["20"]["random"]["reward_regret"]["mean"] >= block["random"]["reward_regret"]["mean"]


def test_cli_json_on_a_synthetic_table(tmp_path, capsys):
    path = synthetic_table(tmp_path / "s.csv", seed=1)
    perm = permuted_table(load_table(path), seed=2, path=tmp_path / "p.csv")
    rc = main(["bench", "strategies", "--table", str(perm), "--budget", "15,30", "--seeds", "2",
               "--strategies", "random,evolution,ppo,ppo-paper,predictor,optuna-tpe,optuna-nsga2", "--jobs", "1",
               "--set", "ppo.batch_size=5", "--reward", "hard", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["options"]["ppo"]["batch_size"] == 5 and rep["reward"]["preset"] == "hard"
    assert set(rep["budgets"]) == {"15", "30"}
    for entry in rep["budgets"]["30"].values():
        assert {"reward_regret", "hv_ratio", "constrained_regret"} <= set(entry)


def test_cli_stops_on_a_streak_of_repeats_and_the_old_factor_is_ignored(tmp_path, capsys):
    path = synthetic_table(tmp_path / "s.csv", seed=1)
    rc = main(["bench", "strategies", "--table", str(path), "--budget", "5", "--seeds", "1", "--strategies",
               "random", "--jobs", "1", "--max-duplicate-streak", "7", "--max-ask-factor", "3", "--json"])
    out = capsys.readouterr()
    assert rc == 0 and json.loads(out.out)["max_duplicate_streak"] == 7
    assert "--max-ask-factor is deprecated" in out.err


def test_cli_user_errors(tmp_path, capsys):
    assert main(["bench", "strategies", "--table", str(tmp_path / "no.csv")]) == 2
    path = synthetic_table(tmp_path / "s.csv", seed=1, missing=0.9)
    assert main(["bench", "strategies", "--table", str(path), "--accuracy", "nope"]) == 2
    assert main(["bench", "strategies", "--table", str(path), "--strategies", "magic"]) == 2
    assert "error:" in capsys.readouterr().err


def test_in_repo_table_is_the_default():
    out = run_cli("bench", "strategies", "--budget", "20", "--seeds", "2",
                  "--strategies", "random,evolution,optuna-nsga2", "--jobs", "1", "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["table"]["rows"] == 15625 and rep["table"]["accuracy"] == "cifar10_test_accuracy"
    assert rep["budgets"]["20"]["evolution"]["evaluations_mean"] == 20


TOY = """
import random


class ToyStrategy:
    name = "toy"

    def __init__(self, space, seed=0):
        self.space, self.rng = space, random.Random(seed)

    def ask(self):
        return tuple(self.rng.randrange(c) for c in self.space.cardinalities)

    def tell(self, tokens, reward, objectives=None):
        pass

    def state_dict(self):  # the benchmark never resumes a search
        return {}

    def load_state_dict(self, d):
        pass

    def diagnostics(self):
        return {}
"""


def test_a_plugin_strategy_runs_through_the_cli(tmp_path):
    """Installed like a pip package would be: a module and its dist-info with an entry point."""
    root = install_plugin(tmp_path / "site", "toy_strategy", TOY,
                          {"mnas.strategies": {"toy": "toy_strategy:ToyStrategy"}})
    with plugins_on_path(root):
        out = run_cli("bench", "strategies", "--strategies", "toy,random", "--table", NB201, "--budget", "20",
                      "--seeds", "2", "--jobs", "1", "--json")
    assert out.returncode == 0, out.stderr
    block = json.loads(out.stdout)["budgets"]["20"]
    assert block["toy"]["evaluations_mean"] == 20 and "p_vs_random" in block["toy"]["reward_regret"]
