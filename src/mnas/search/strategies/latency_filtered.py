"""Baselines that know latency before training but have no model of accuracy, so that the benchmark can say
what the surrogate of ``predictor`` and ``ppo-screened`` adds beyond knowing latency (docs/strategies.md).

Both read the reward's latency term off the results (``surrogate.LatencyTerm``: reward / accuracy against
latency, exact for the soft and hard presets) and measure at most ``screen`` latencies per training, by
default ``surrogate.PER_TRAINING`` (20), the cap of ``predictor``'s and ``ppo-screened``'s screen. A latency
is measured once (cached) and every measurement counts as a query; a candidate whose latency cannot be
measured is never trained (it would fail to train: the screened strategies never waste a training there
either). Until the results carry accuracy and latency, and without a latency oracle, they are their plain
counterparts (with an oracle, trained candidates are measurable ones).

* ``evolution-latency`` (``LatencyEvolution``): regularized evolution whose proposal is the best of ``screen``
  children, each bred as evolution breeds one (tournament, mutation), by the reward it would have with its
  parent's accuracy: parent accuracy x latency term at the child's measured latency. A mutation changes one
  decision, so the parent's accuracy is the model-free guess of the child's; the latency term is exact.
  Children already evaluated are passed over while there are new ones.
* ``random-latency`` (``LatencyRandom``): uniform random candidates measured one at a time; the first that
  could beat the best reward so far if it were as accurate as the most accurate result so far (best accuracy
  x its latency term > best reward) is trained; when none of ``screen`` passes, the measured one that came
  closest.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mnas import MnasError
from mnas.search.strategies.base import LatencyOracle, Tokens
from mnas.search.strategies.evolution import RegularizedEvolution
from mnas.search.strategies.random_search import RandomSearch
from mnas.search.strategies.surrogate import PER_TRAINING, LatencyTerm, Screen
from mnas.space.decisions import SearchSpace


class _Latencies:
    """The measured latencies (cached, counted) and the results' accuracy, latency and latency term."""

    def __init__(self, cardinalities: tuple[int, ...], screen: int, name: str) -> None:
        if screen < 1:
            raise MnasError(f"{name}: need screen >= 1 (latencies measured per training)")
        self.screen = screen
        self.known = Screen(cardinalities, screen)  # only its cache, its results and its count of queries
        self.oracle: LatencyOracle | None = None

    def usable(self) -> bool:
        return self.oracle is not None and self.known.usable(1)

    def latency(self, tokens: Tokens) -> float | None:
        """The candidate's latency (measured now unless measured before); None: cannot be measured."""
        self.known.measure([tokens], self.oracle)  # type: ignore[arg-type]
        return self.known.measured[tokens]

    def measure(self, candidates: list[Tokens]) -> None:
        self.known.measure(candidates, self.oracle)  # type: ignore[arg-type]

    def term(self) -> LatencyTerm:
        reward, acc, lat = (np.array(v) for v in zip(*self.known.results.values()))
        return LatencyTerm(lat, reward / acc)

    def first_measurable(self, draw: Callable[[], Tokens]) -> Tokens:
        """The first of up to ``screen`` draws whose latency can be measured (the last draw if none)."""
        for _ in range(self.screen):
            tokens = draw()
            if self.latency(tokens) is not None:
                return tokens
        return tokens

    def state(self) -> dict:
        return self.known.state_dict()

    def load(self, d: dict) -> None:
        self.known.load_state_dict(d)


class LatencyEvolution(RegularizedEvolution):
    name = "evolution-latency"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20, sample_size: int = 5,
                 mutations: int = 1, screen: int = PER_TRAINING) -> None:
        super().__init__(space, seed, population_size, sample_size, mutations)
        self.lat = _Latencies(space.cardinalities, screen, self.name)
        self.seen: set[Tokens] = set()

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None:
        """``LatencyAware``: with an oracle, children are screened by their latency term."""
        self.lat.oracle = oracle

    def ask(self) -> Tokens:
        if self.lat.oracle is None:
            return super().ask()
        self.n_asked += 1
        if len(self.population) < self.population_size or not self._mutable or not self.lat.usable():
            tokens = self.lat.first_measurable(lambda: self.space.sample_tokens(self.rng))
        else:
            tokens = self._screened_child()
        self.seen.add(tokens)
        return tokens

    def _screened_child(self) -> Tokens:
        bred = [(parent, self._mutate(parent)) for parent in (self._parent() for _ in range(self.lat.screen))]
        new = [(p, c) for p, c in bred if c not in self.seen] or bred  # repeats only when nothing new was bred
        self.lat.measure([c for _, c in new])
        term, results = self.lat.term(), self.lat.known.results
        best, score = new[0][1], -math.inf
        for parent, child in new:
            ms = self.lat.known.measured[child]
            if ms is None or parent not in results:
                continue
            guess = results[parent][1] * float(term(np.array([ms]))[0])  # parent's accuracy x child's term
            if guess > score:
                best, score = child, guess
        return best

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        super().tell(tokens, reward, objectives)
        tokens = self._check(tokens)
        self.seen.add(tokens)
        if reward is not None and math.isfinite(reward):
            self.lat.known.tell(tokens, float(reward), objectives)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seen": sorted(list(t) for t in self.seen), "latencies": self.lat.state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.seen = {tuple(t) for t in d["seen"]}
        self.lat.load(d["latencies"])

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "latency_queries": self.lat.known.queries}


class LatencyRandom(RandomSearch):
    name = "random-latency"

    def __init__(self, space: SearchSpace, seed: int = 0, screen: int = PER_TRAINING) -> None:
        super().__init__(space, seed)
        self.lat = _Latencies(space.cardinalities, screen, self.name)

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None:
        """``LatencyAware``: with an oracle, candidates are filtered by their latency term."""
        self.lat.oracle = oracle

    def ask(self) -> Tokens:
        if self.lat.oracle is None:
            return super().ask()
        self.n_asked += 1
        draw = lambda: self.space.sample_tokens(self.rng)  # noqa: E731
        if not self.lat.usable():
            return self.lat.first_measurable(draw)
        term, results = self.lat.term(), self.lat.known.results.values()
        best_reward = max(r for r, _, _ in results)
        best_acc = max(a for _, a, _ in results)
        closest: tuple[float, Tokens] | None = None
        for _ in range(self.lat.screen):
            tokens = draw()
            ms = self.lat.latency(tokens)
            if ms is None:
                continue
            bound = best_acc * float(term(np.array([ms]))[0])
            if bound > best_reward:
                return tokens
            if closest is None or bound > closest[0]:
                closest = (bound, tokens)
        return closest[1] if closest is not None else tokens

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        super().tell(tokens, reward, objectives)
        if reward is not None and math.isfinite(reward):
            self.lat.known.tell(self._check(tokens), float(reward), objectives)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "latencies": self.lat.state()}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.lat.load(d["latencies"])

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "latency_queries": self.lat.known.queries}
