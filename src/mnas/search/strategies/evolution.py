"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier
Architecture Search"): a population of the ``population_size`` most recent results; each proposal
mutates one decision of the best of ``sample_size`` individuals drawn at random; the oldest
individual dies when a new one arrives, so a lucky early result cannot dominate forever.

Until the population is full, proposals are uniform random (the paper's initial population). Failed
trials do not enter the population. Repeated tells re-enter the population like any child would.
Defaults (20, 5) suit budgets of a few hundred evaluations (the paper used 100/25 over 20k models):
the population should hold roughly a tenth of the budget so that selection starts early.
"""

from __future__ import annotations

import random
from collections import deque

from mnas import MnasError
from mnas.search.strategies.base import BaseStrategy, Tokens, py_rng_state, set_py_rng_state
from mnas.space.decisions import SearchSpace


class RegularizedEvolution(BaseStrategy):
    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20,
                 sample_size: int = 5, mutations: int = 1) -> None:
        super().__init__(space, seed)
        if population_size < 2 or not 1 <= sample_size <= population_size or mutations < 1:
            raise MnasError("evolution: need population_size >= 2, 1 <= sample_size <= population_size, "
                            "mutations >= 1")
        self.population_size, self.sample_size, self.mutations = population_size, sample_size, mutations
        self.rng = random.Random(seed)
        self.population: deque[tuple[Tokens, float]] = deque()
        self._mutable = [i for i, c in enumerate(space.cardinalities) if c > 1]

    def ask(self) -> Tokens:
        self.n_asked += 1
        if len(self.population) < self.population_size or not self._mutable:
            return self.space.sample_tokens(self.rng)
        return self._mutate(self._parent())

    def _parent(self) -> Tokens:
        """The best of ``sample_size`` individuals drawn at random."""
        contenders = self.rng.sample(range(len(self.population)), self.sample_size)
        # ties go to the younger individual (higher index): it carries the most recent information
        best = max(contenders, key=lambda i: (self.population[i][1], i))
        return self.population[best][0]

    def _mutate(self, parent: Tokens) -> Tokens:
        child = list(parent)
        cards = self.space.cardinalities
        for pos in self.rng.sample(self._mutable, min(self.mutations, len(self._mutable))):
            new = self.rng.randrange(cards[pos] - 1)
            child[pos] = new + (new >= child[pos])  # any value but the current one
        return tuple(child)

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        self.n_told += 1
        if reward is None:
            self.n_failed += 1
            return
        self.population.append((tokens, float(reward)))
        while len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> dict:
        return {**self._header(), "rng": py_rng_state(self.rng),
                "population": [[list(t), r] for t, r in self.population]}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        set_py_rng_state(self.rng, d["rng"])
        self.population = deque((tuple(t), float(r)) for t, r in d["population"])

    def diagnostics(self) -> dict:
        rewards = [r for _, r in self.population]
        return {**super().diagnostics(), "population": len(rewards),
                "population_best": max(rewards) if rewards else None,
                "population_mean": sum(rewards) / len(rewards) if rewards else None}
