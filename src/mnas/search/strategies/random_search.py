"""Uniform random search: the baseline every other strategy must beat."""

from __future__ import annotations

import random

from mnas.search.strategies.base import BaseStrategy, Tokens, py_rng_state, set_py_rng_state
from mnas.space.decisions import SearchSpace


class RandomSearch(BaseStrategy):
    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.rng = random.Random(seed)

    def ask(self) -> Tokens:
        self.n_asked += 1
        return self.space.sample_tokens(self.rng)

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        self._check(tokens)
        self.n_told += 1
        self.n_failed += reward is None

    def state_dict(self) -> dict:
        return {**self._header(), "rng": py_rng_state(self.rng)}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        set_py_rng_state(self.rng, d["rng"])
