import json

import numpy as np
import pytest

from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies import make_strategy
from mnas.search.strategies.surrogate import LatencyTerm, Quantiles, Screen
from mnas.space.nb201 import Nb201Space

SPACE = Nb201Space()


@pytest.mark.parametrize("preset", ["soft", "hard"])
def test_the_latency_term_read_off_results_is_the_reward_s(preset):
    """reward / accuracy against latency, from 30 results, gives the reward's latency factor at latencies
    never seen, below, between and above them (the soft preset is one line in log-log, the hard one two)."""
    cfg = RewardConfig.from_preset(preset, target_ms=5.0)
    rng = np.random.default_rng(0)
    lat = rng.uniform(2.0, 9.0, 30)
    acc = rng.uniform(0.5, 0.9, 30)
    term = LatencyTerm(lat, np.array([reward(a, m, cfg) / a for a, m in zip(acc, lat)]))
    for ms in (1.0, 3.3, 4.0, 6.1, 20.0):
        if preset == "hard" and ms in (4.0, 6.1):
            continue  # the kink at T lies between two results: interpolated, not exact
        assert term(np.array([ms]))[0] == pytest.approx(reward(0.8, ms, cfg) / 0.8, rel=1e-9)


def test_quantiles_map_scores_back_to_accuracies_in_order():
    acc = np.array([0.1, 0.8, 0.85, 0.9, 0.93, 0.94])
    q = Quantiles(acc)
    assert np.allclose(q(q.scores), acc)
    assert np.all(np.diff(q(np.linspace(-3, 3, 50))) >= 0) and q(np.array([5.0]))[0] > 0.94


def _results(screen, tokens, acc, lat_of):
    cfg = RewardConfig.from_preset("soft", target_ms=5.0)
    for t in tokens:
        screen.tell(t, reward(acc, lat_of(t), cfg), {"accuracy": acc, "latency_ms": lat_of(t)})


def test_the_screen_trains_the_fastest_when_accuracy_says_nothing():
    """Every result has the same accuracy, so the reward only differs by latency: among 40 candidates,
    all measured, the screen picks the fastest ones, measures no more than it may, and keeps none it
    could not measure."""
    rng = np.random.default_rng(1)
    cands = [tuple(int(x) for x in rng.integers(0, 5, 6)) for _ in range(60)]
    lat = {t: 1.0 + sum(t) + 0.01 * i for i, t in enumerate(cands)}
    screen = Screen(SPACE.cardinalities, per_training=20)
    _results(screen, cands[:20], 0.9, lat.__getitem__)
    pool = [t for t in dict.fromkeys(cands[20:]) if t not in screen.results]
    calls = []

    def oracle(ts):
        calls.append(len(ts))
        return [None if t == min(pool, key=lat.__getitem__) else lat[t] for t in ts]

    chosen = screen.choose(pool, 2, oracle)
    measured = sorted((t for t in pool if screen.measured.get(t) is not None), key=lat.__getitem__)
    assert chosen == measured[:2]  # the unmeasurable fastest is skipped
    assert sum(calls) == screen.queries <= 40
    again = screen.choose(pool, 2, oracle)  # cached latencies: no query twice
    assert again == chosen and screen.queries == sum(calls) <= 40


def test_the_screen_resumes_with_the_same_models():
    """The models are those of the last refit, rebuilt from the state after a restore: the restored
    screen chooses what the original does although results arrived after the refit."""
    rng = np.random.default_rng(2)
    cands = [tuple(int(x) for x in rng.integers(0, 5, 6)) for _ in range(80)]
    acc_of = {t: 0.5 + 0.08 * t[0] - 0.02 * t[3] for t in cands}
    cfg = RewardConfig.from_preset("soft", target_ms=5.0)
    screen = Screen(SPACE.cardinalities, per_training=3)
    for t in cands[:20]:
        screen.tell(t, reward(acc_of[t], 1.0 + sum(t), cfg), {"accuracy": acc_of[t], "latency_ms": 1.0 + sum(t)})
    screen.refit()
    for t in cands[20:30]:  # after the refit
        screen.tell(t, reward(acc_of[t], 1.0 + sum(t), cfg), {"accuracy": acc_of[t], "latency_ms": 1.0 + sum(t)})
    twin = Screen(SPACE.cardinalities, per_training=3)
    twin.load_state_dict(json.loads(json.dumps(screen.state_dict())))
    pool = list(dict.fromkeys(t for t in cands[30:] if t not in screen.results))

    def oracle(ts):
        return [1.0 + sum(t) for t in ts]

    assert screen.choose(pool, 3, oracle) == twin.choose(pool, 3, oracle)


def test_ppo_screened_trains_only_what_can_be_measured_and_resumes_exactly():
    """ppo-screened: after the first update each proposal is the surrogate's pick among new policy
    samples, and before it the first measurable of new samples; cells whose latency cannot be measured (first
    edge 'none') are never proposed, the queries are counted, and a copy restored mid-way proposes what the original does."""
    opts = {"batch_size": 4, "hidden_size": 16, "embedding_size": 8, "screen": 6}

    def oracle(ts):
        return [None if t[0] == 0 else 1.0 + sum(t) for t in ts]

    def drive(s, n):
        out = []
        for _ in range(n):
            t = s.ask()
            acc = 0.5 + 0.05 * sum(a == b for a, b in zip(t, (4, 4, 0, 3, 2, 1)))
            s.tell(t, acc * (1.0 + sum(t)) ** -0.07, {"accuracy": acc, "latency_ms": 1.0 + sum(t)})
            out.append(t)
        return out

    s = make_strategy("ppo-screened", SPACE, seed=0, **opts)
    s.use_latency_oracle(oracle)
    asked = drive(s, 24)
    assert all(t[0] != 0 for t in asked) and s.screener.queries > 20 * 3
    twin = make_strategy("ppo-screened", SPACE, seed=5, **opts)
    twin.load_state_dict(json.loads(json.dumps(s.state_dict())))
    twin.use_latency_oracle(oracle)
    assert drive(s, 10) == drive(twin, 10)
    plain, unscreened = make_strategy("ppo", SPACE, seed=0, **{**opts, "screen": 0}), \
        make_strategy("ppo-screened", SPACE, seed=0, **opts)
    assert drive(plain, 12) == drive(unscreened, 12)  # no oracle: the screen is off, plain PPO
