import math

import pytest

from mnas import MnasError
from mnas.search.reward import Constraint, RewardConfig, exponent_for_tradeoff, reward


def test_soft_preset_matches_hand_computed_values():
    cfg = RewardConfig.from_preset("soft", target_ms=75)
    assert (cfg.alpha, cfg.beta) == (-0.07, -0.07)
    assert reward(0.75, 75, cfg) == pytest.approx(0.75)
    # 0.5 * (150/75)^-0.07 = 0.5 * 2^-0.07 = 0.476327...
    assert reward(0.5, 150, cfg) == pytest.approx(0.5 * 2 ** -0.07)
    assert reward(0.5, 150, cfg) == pytest.approx(0.4763191, abs=1e-6)
    # below the target the soft reward rewards speed: 0.5 * (37.5/75)^-0.07 = 0.5 * 2^0.07
    assert reward(0.5, 37.5, cfg) == pytest.approx(0.5248586, abs=1e-6)


def test_hard_preset_is_plain_accuracy_under_target_and_proportional_penalty_above():
    cfg = RewardConfig.from_preset("hard", target_ms=80)
    assert reward(0.5, 40, cfg) == pytest.approx(0.5)
    assert reward(0.5, 80, cfg) == pytest.approx(0.5)
    assert reward(0.5, 100, cfg) == pytest.approx(0.5 * 80 / 100)


def test_five_percent_for_twice_the_latency():
    beta = exponent_for_tradeoff(0.05, 2.0)
    assert beta == pytest.approx(-0.0704, abs=1e-4)
    cfg = RewardConfig(target_ms=75, alpha=beta, beta=beta, preset=None)
    # a model twice as slow and 5 % more accurate earns the same reward
    assert reward(0.7 * 1.05, 120, cfg) == pytest.approx(reward(0.7, 60, cfg))


def test_constraints_multiply_in():
    cfg = RewardConfig.from_preset("soft", target_ms=75,
                                   constraints=[Constraint(metric="params", target=4e6, alpha=0.0, beta=-1.0),
                                                Constraint(metric="macs", target=300e6, alpha=-0.07, beta=-0.07)])
    got = reward(0.7, 75, cfg, params=5e6, macs=150e6)
    assert got == pytest.approx(0.7 * (4e6 / 5e6) * 0.5 ** -0.07)
    assert reward(0.7, 75, cfg, params=3e6, macs=300e6) == pytest.approx(0.7)
    with pytest.raises(MnasError, match="params"):
        reward(0.7, 75, cfg, macs=1e6)


def test_no_target_means_accuracy_only_and_round_trip():
    assert reward(0.6, 500, RewardConfig(target_ms=None)) == 0.6
    cfg = RewardConfig.from_preset("hard", 22.0, [Constraint(metric="macs", target=1e8)])
    back = RewardConfig.from_dict(cfg.to_dict())
    assert back == cfg and back.with_target(30).target_ms == 30


@pytest.mark.parametrize("bad", [dict(target_ms=0), dict(target_ms=-1)])
def test_bad_configs_are_user_errors(bad):
    with pytest.raises(MnasError):
        RewardConfig(**bad)
    with pytest.raises(MnasError):
        RewardConfig.from_preset("medium", 75)
    with pytest.raises(MnasError):
        reward(0.5, math.nan, RewardConfig.from_preset("soft", 75))
