"""The baselines given what the screened strategies know (latency before training), and the screen's
ablation: each runs in the benchmark harness, uses the latency oracle the way it says, and counts it."""

from __future__ import annotations

import numpy as np
import pytest

from mnas.search.bench import Oracle, load_table, run_search, synthetic_table
from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies import make_strategy
from mnas.space.nb201 import Nb201Space

SPACE = Nb201Space()
CFG = RewardConfig.from_preset("soft", target_ms=8.0)


@pytest.fixture(autouse=True)
def one_thread():
    """As the benchmark's workers run: the surrogate's small linear algebra spends most of its time
    waiting for its threads on a busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def half_table(tmp_path_factory):
    """A synthetic table with half its cells missing: a missing cell's latency cannot be measured."""
    path = synthetic_table(tmp_path_factory.mktemp("t") / "half.csv", seed=4, missing=0.5)
    return Oracle.build(load_table(path))


@pytest.mark.parametrize("name,options,per_training", [
    ("evolution-latency", {"population_size": 10, "sample_size": 3}, 20),
    ("random-latency", {}, 20),
    ("screen-random", {"initial": 5, "batch_size": 5, "candidates": 60}, 20),
    ("ppo-screened", {"batch_size": 5, "hidden_size": 16, "embedding_size": 8}, 20),
])
def test_latency_aware_strategies_train_only_measurable_cells_and_count_their_queries(
        half_table, name, options, per_training):
    budget = 30
    out = run_search(half_table, name, seed=0, budget=budget, options=options)
    rows, queries = out["rows"], out["latency_queries"]
    assert len(rows) == budget and min(rows) >= 0  # never a training of a cell it could not measure
    assert queries[-1] >= len(rows)  # every trained cell was measured first
    assert queries[-1] <= per_training * len(rows) + per_training  # the screen's budget per training
    if name != "screen-random":  # it measures a batch at a time; the others never more per training
        assert max(np.diff([0, *queries])) <= per_training
    blind = run_search(half_table, name, seed=0, budget=budget, options=options, latency_oracle=False)
    assert blind["latency_queries"][-1] == 0 and min(blind["rows"]) == -1  # without an oracle: blind


def _results(s, tokens_list, lat_of, acc=0.9):
    for t in tokens_list:
        s.tell(t, reward(acc, lat_of(t), CFG), {"accuracy": acc, "latency_ms": lat_of(t)})


def _lat(t):
    return 1.0 + sum((i % 3 + 1) * x for i, x in enumerate(t))


def test_latency_evolution_trains_the_child_with_the_best_latency_term():
    """Every result equally accurate: the reward is the latency term, so of the children bred for one
    proposal the fastest new one is trained; unmeasurable children are passed over."""
    s = make_strategy("evolution-latency", SPACE, seed=1, population_size=6, sample_size=2, screen=8)
    calls = []

    def oracle(ts):
        calls.append(list(ts))
        return [None if t[0] == 4 else _lat(t) for t in ts]

    s.use_latency_oracle(oracle)
    _results(s, [s.ask() for _ in range(6)], _lat)
    bred = []
    mutate = s._mutate
    s._mutate = lambda parent: bred.append(mutate(parent)) or bred[-1]
    for _ in range(10):
        bred.clear()
        chosen = s.ask()
        fresh = [c for c in bred if c not in s.seen or c == chosen]
        measurable = [c for c in fresh if c[0] != 4]
        assert len(bred) == 8 and chosen == min(measurable, key=_lat)
        _results(s, [chosen], _lat)
    assert s.diagnostics()["latency_queries"] == sum(map(len, calls)) <= 6 * 8 + 10 * 8


def test_latency_random_trains_the_first_candidate_that_could_beat_the_best():
    """Equally accurate results: a candidate can beat the best only by being faster than the fastest
    result. Each proposal is the first candidate of its ask that is, or when none of the 20 measured is,
    the fastest of them."""
    s = make_strategy("random-latency", SPACE, seed=2, screen=20)
    calls = []

    def oracle(ts):
        calls.append(list(ts))
        return [_lat(t) for t in ts]

    s.use_latency_oracle(oracle)
    _results(s, [(2, 2, 2, 2, 2, 2), (3, 3, 3, 3, 3, 3)], _lat)  # middling: most random candidates are slower
    passed = 0
    for _ in range(10):
        calls.clear()
        fastest = min(lat for _, _, lat in s.lat.known.results.values())
        chosen = s.ask()
        queried = [t for call in calls for t in call]
        assert len(queried) <= 20
        if _lat(chosen) < fastest:
            passed += 1
            assert queried[-1] == chosen and all(_lat(t) >= fastest for t in queried[:-1])
        else:
            assert _lat(chosen) == min(map(_lat, queried))
        _results(s, [chosen], _lat)
    assert 1 <= passed < 10


@pytest.mark.parametrize("name,near", [("predictor", True), ("screen-random", False)])
def test_the_screen_ablation_chooses_among_uniformly_random_candidates(name, near):
    """predictor's candidates are children of its best results (one or two decisions changed, a tenth
    random); screen-random's are uniform, so few lie that close to any of the parents."""
    s = make_strategy(name, SPACE, seed=0, initial=5, batch_size=5, candidates=100, parents=5)
    s.use_latency_oracle(lambda ts: [_lat(t) for t in ts])
    pools = []
    choose = s.screen.choose
    s.screen.choose = lambda pool, n, oracle: pools.append((list(pool), dict(s.results))) or choose(pool, n, oracle)
    acc = {}
    for _ in range(20):
        t = s.ask()
        acc[t] = 0.5 + 0.05 * sum(a == b for a, b in zip(t, (1, 2, 3, 4, 0, 1)))
        s.tell(t, reward(acc[t], _lat(t), CFG), {"accuracy": acc[t], "latency_ms": _lat(t)})
    assert pools
    close = []
    for pool, results in pools:
        parents = sorted(results, key=results.get, reverse=True)[:5]
        close += [min(sum(a != b for a, b in zip(c, p)) for p in parents) <= 2 for c in pool]
    assert (np.mean(close) > 0.8) if near else (np.mean(close) < 0.3)
