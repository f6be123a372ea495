import json
import random

import numpy as np
import pytest

from mnas import MnasError
from mnas.search.bench import Oracle, load_table, run_search, synthetic_table
from mnas.search.strategies import make_strategy
from mnas.space.nb201 import Nb201Space

SPACE = Nb201Space()
OPTS = {"initial": 6, "batch_size": 3, "candidates": 60}


def _landscape(tokens):
    """Main effects plus one interaction, a unique best cell (4, 4, 0, 3, 2, 1) and latency from the ops."""
    best = (4, 4, 0, 3, 2, 1)
    acc = 0.5 + 0.06 * sum(a == b for a, b in zip(tokens, best)) + 0.05 * (tokens[0] == tokens[1] == 4)
    lat = 1.0 + sum(tokens)
    return acc, lat


def _search(s, n):
    for _ in range(n):
        t = s.ask()
        acc, lat = _landscape(t)
        s.tell(t, acc, {"accuracy": acc, "latency_ms": lat})
        yield t


def test_finds_the_best_cell_with_a_fraction_of_the_trainings():
    """15,625 cells; random search would need ~7,800 trainings on average, the predictor needs < 80."""
    for seed in range(3):
        found = list(_search(make_strategy("predictor", SPACE, seed=seed, **OPTS), 80))
        assert (4, 4, 0, 3, 2, 1) in found
        assert len(set(found)) == len(found)  # never trains an architecture twice


def test_latency_oracle_screens_out_what_cannot_be_measured():
    """Latency is unknown for cells whose first edge is 'none' (token 0): with the oracle, no such cell
    is proposed once the random start is over, and the queries are counted."""
    calls = []

    def oracle(cands):
        calls.append(len(cands))
        return [None if t[0] == 0 else _landscape(t)[1] for t in cands]

    s = make_strategy("predictor", SPACE, seed=0, **OPTS)
    s.use_latency_oracle(oracle)
    found = list(_search(s, 60))
    assert all(t[0] != 0 for t in found[OPTS["initial"]:])
    assert s.diagnostics()["latency_queries"] == sum(calls) > 0
    twin = make_strategy("predictor", SPACE, seed=1, **OPTS)
    twin.load_state_dict(json.loads(json.dumps(s.state_dict())))
    twin.use_latency_oracle(oracle)  # the loop gives a restored strategy its oracle again
    assert list(_search(s, 12)) == list(_search(twin, 12))


def test_failures_and_foreign_tells():
    s = make_strategy("predictor", SPACE, seed=2, **OPTS)
    rng = random.Random(0)
    for i in range(30):
        t = s.ask()
        acc, lat = _landscape(t)
        s.tell(t, None if i % 4 == 0 else acc, {"accuracy": acc, "latency_ms": lat})
        other = SPACE.sample_tokens(rng)
        s.tell(other, *(lambda a, ms: (a, {"accuracy": a, "latency_ms": ms}))(*_landscape(other)))
    d = s.diagnostics()
    assert d["failed"] == 8 and d["told"] == 60
    s.tell((0,) * 6, 0.7)  # a reward without objectives: the strategy keeps working on rewards alone
    s.use_latency_oracle(lambda cands: [1.0] * len(cands))
    assert SPACE.check_tokens(s.ask())


def test_bad_options_are_user_errors():
    with pytest.raises(MnasError, match="predictor"):
        make_strategy("predictor", SPACE, batch_size=0)
    with pytest.raises(MnasError, match="predictor"):
        make_strategy("predictor", SPACE, population=3)


def test_bench_gives_the_oracle_and_counts_queries_apart(tmp_path):
    """30 % of the cells are missing from the table: with the oracle the predictor trains none of them
    after its random start; without it, it does."""
    oracle = Oracle.build(load_table(synthetic_table(tmp_path / "s.csv", seed=4, missing=0.3)))
    with_oracle = run_search(oracle, "predictor", seed=0, budget=60)
    without = run_search(oracle, "predictor", seed=0, budget=60, latency_oracle=False)
    assert min(with_oracle["rows"][10:]) >= 0 and with_oracle["latency_queries"][-1] > 0
    assert min(without["rows"][10:]) < 0 and without["latency_queries"][-1] == 0
    assert np.all(np.diff(with_oracle["latency_queries"]) >= 0)
