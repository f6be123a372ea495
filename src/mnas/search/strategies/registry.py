"""Strategies by name (``strategy.name`` in a config, ``--strategies`` of ``mnas bench strategies``).

Built-ins below; a plugin adds one through the ``mnas.strategies`` entry-point group (``toy =
my_module:ToyStrategy``) or ``STRATEGIES.register``. A registered object is called as
``obj(space, seed=seed, **options)`` and returns a strategy following ``base``'s contract.
"""

from __future__ import annotations

from typing import Any

from mnas import MnasError
from mnas.registry import Registry
from mnas.search.strategies.base import Strategy
from mnas.space.decisions import SearchSpace

STRATEGIES: Registry = Registry("strategy", "mnas.strategies", {
    "random": "mnas.search.strategies.random_search:RandomSearch",
    "evolution": "mnas.search.strategies.evolution:RegularizedEvolution",
    "evolution-latency": "mnas.search.strategies.latency_filtered:LatencyEvolution",
    "random-latency": "mnas.search.strategies.latency_filtered:LatencyRandom",
    "ppo": "mnas.search.strategies.ppo:PPOStrategy",
    "ppo-paper": "mnas.search.strategies.ppo:paper_ppo",
    "ppo-screened": "mnas.search.strategies.ppo:ScreenedPPO",
    "predictor": "mnas.search.strategies.predictor:PredictorGuided",
    "screen-random": "mnas.search.strategies.predictor:screen_random",
    "optuna-tpe": "mnas.search.strategies.optuna_strategies:OptunaTPE",
    "optuna-nsga2": "mnas.search.strategies.optuna_strategies:OptunaNSGA2",
})


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """A fresh strategy; unknown options are a user error naming the strategy."""
    cls = STRATEGIES.get(name)
    try:
        return cls(space, seed=seed, **options)
    except (TypeError, ValueError) as e:  # an unknown option, or one of the wrong type (YAML reads 1e-3 as text)
        if isinstance(e, MnasError):
            raise
        raise MnasError(f"strategy {name}: invalid options {options}: {e}") from None
