"""Predictor-guided search: a cheap model of the reward screens many candidates bred by evolution and
sends only the most promising to training (surrogate-assisted search in the spirit of BANANAS, White et
al. 2021, with a Gaussian process in place of their neural ensemble; the models are in ``surrogate``).

Each time it runs out of proposals the strategy

1. breeds ``candidates`` new architectures: one or two decisions of one of the ``parents`` best so far
   changed (regularized evolution's mutation), plus a tenth uniformly random ones;
2. with a latency oracle (``use_latency_oracle``: a latency measurement is cheap next to a training) and
   results that carry their accuracy and latency: ranks them by the expected improvement of the reward modelled
   as accuracy (a Gaussian process) times the latency term (read off the results) at the latency (measured,
   or predicted by a second process), measures the latency of the best ``screen`` x ``batch_size``, ranks
   those again with their latency known and queues the best ``batch_size`` (``surrogate.Screen``);
3. otherwise ranks them by the expected improvement of the reward itself (a process on the rewards' normal
   scores) and queues the best ``batch_size``, with an oracle the first ones whose latency can be measured.

The first ``initial`` proposals are uniform random (with an oracle, measurable). No architecture is proposed
twice. Failed trials only count as seen. ``screen=0`` turns the latency model off (step 3 always).
``pool="random"`` (strategy ``screen-random``) replaces step 1 by ``candidates`` uniformly random
architectures: the screen's ablation, which says what breeding adds to the surrogate (and, beside
``ppo-screened``, what the policy's roll-outs add).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mnas import MnasError
from mnas.search.strategies.base import BaseStrategy, LatencyOracle, Tokens
from mnas.search.strategies.surrogate import (
    EXPLORE, PER_TRAINING, Process, Screen, expected_improvement, normal_scores)
from mnas.space.decisions import SearchSpace



class PredictorGuided(BaseStrategy):
    name = "predictor"

    def __init__(self, space: SearchSpace, seed: int = 0, initial: int = 10, batch_size: int = 5,
                 candidates: int = 300, parents: int = 10, screen: int = PER_TRAINING,
                 explore: float = EXPLORE, pool: str = "bred") -> None:
        super().__init__(space, seed)
        if initial < 2 or batch_size < 1 or candidates < 10 or parents < 1 or screen < 0 \
                or explore <= 0:
            raise MnasError("predictor: need initial >= 2, batch_size >= 1, candidates >= 10, parents >= 1, "
                            "screen >= 0, explore > 0")
        if pool not in ("bred", "random"):
            raise MnasError(f"predictor: pool {pool!r}: expected bred (children of the best) or random")
        self.pool = pool
        self.initial, self.batch_size, self.candidates, self.parents = initial, batch_size, candidates, parents
        self.screen = Screen(space.cardinalities, screen, explore)  # also the cache of measured latencies
        self.latency_oracle: LatencyOracle | None = None  # use_latency_oracle: not part of the state
        self.rng = np.random.default_rng(seed)
        self.seen: set[Tokens] = set()
        self.results: dict[Tokens, float] = {}  # rewards of the trials that did not fail
        self.queue: list[Tokens] = []

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None:
        """``LatencyAware``: with an oracle, proposals are screened by latency (see the module's docstring)."""
        self.latency_oracle = oracle

    def ask(self) -> Tokens:
        self.n_asked += 1
        if not self.queue:
            self.queue = self._next_batch()
        tokens = self.queue.pop(0)
        self.seen.add(tokens)
        return tokens

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None:
        tokens = self._check(tokens)
        self.n_told += 1
        self.seen.add(tokens)
        if reward is None or not math.isfinite(reward):
            self.n_failed += 1
            return
        self.results[tokens] = float(reward)
        self.screen.tell(tokens, float(reward), objectives)

    # proposals -----------------------------------------------------------------------------------

    def _random(self, n: int) -> list[Tokens]:
        cards = self.space.cardinalities
        rows = self.rng.integers(0, cards, size=(n, len(cards)))
        return [tuple(int(x) for x in r) for r in rows]

    def _next_batch(self) -> list[Tokens]:
        if len(self.results) < self.initial:
            return self._measurable(self._fresh(self._random(2 * self.batch_size)), self.batch_size) \
                or self._random(1)
        pool = self._fresh(self._breed() if self.pool == "bred" else self._random(self.candidates))
        if not pool:  # the neighbourhood of the best is used up: anything new
            return self._measurable(self._fresh(self._random(self.candidates)), self.batch_size) or self._random(1)
        if self.screen.per_training and self.latency_oracle is not None and self.screen.usable(self.initial):
            self.screen.refit()
            return self.screen.choose(pool, self.batch_size, self.latency_oracle) or self._random(1)
        gp = Process(list(self.results), self.space.cardinalities)
        scores = normal_scores(np.array(list(self.results.values())))
        mean, std = gp.predict(scores, pool)
        order = np.argsort(-expected_improvement(mean, std, scores.max()))
        return self._measurable([pool[i] for i in order], self.batch_size) or self._random(1)

    def _breed(self) -> list[Tokens]:
        """Children of the ``parents`` best so far with one or two decisions changed, and a tenth random."""
        best = np.array(sorted(self.results, key=self.results.__getitem__, reverse=True)[:self.parents])
        cards = np.array(self.space.cardinalities)
        mutable = np.flatnonzero(cards > 1)
        n = self.candidates - self.candidates // 10
        if not len(mutable) or n < 1:
            return self._random(self.candidates)
        children = best[self.rng.integers(len(best), size=n)]
        first = self.rng.integers(len(mutable), size=n)
        second = (first + self.rng.integers(1, max(len(mutable), 2), size=n)) % len(mutable)  # another one
        twice = self.rng.random(n) < 0.5
        for which, rows in ((first, np.arange(n)), (second[twice], np.flatnonzero(twice))):
            pos = mutable[which]
            old = children[rows, pos]
            new = self.rng.integers(0, cards[pos] - 1)
            children[rows, pos] = new + (new >= old)  # any value but the current one
        return [tuple(int(x) for x in c) for c in children] + self._random(self.candidates // 10)

    def _fresh(self, tokens: Sequence[Tokens]) -> list[Tokens]:
        """``tokens`` not seen before, duplicates dropped, order kept."""
        return [t for t in dict.fromkeys(tokens) if t not in self.seen]

    def _measurable(self, ranked: list[Tokens], n: int) -> list[Tokens]:
        """The first ``n`` of ``ranked``; with an oracle, the first ``n`` whose latency can be measured,
        measuring ``n`` at a time in order (so about one query per training where nothing fails)."""
        if self.latency_oracle is None:
            return ranked[:n]
        chosen: list[Tokens] = []
        for start in range(0, len(ranked), n):
            if len(chosen) >= n:
                break
            part = ranked[start:start + n]
            self.screen.measure(part, self.latency_oracle)
            chosen += [t for t in part if self.screen.measured[t] is not None]
        return chosen[:n]

    # state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {**self._header(), "rng": self.rng.bit_generator.state,
                "seen": sorted(list(t) for t in self.seen),
                "results": [[list(t), r] for t, r in self.results.items()],
                "queue": [list(t) for t in self.queue], "screen": self.screen.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        self.rng.bit_generator.state = d["rng"]
        self.seen = {tuple(t) for t in d["seen"]}
        self.results = {tuple(t): float(r) for t, r in d["results"]}
        self.queue = [tuple(t) for t in d["queue"]]
        self.screen.load_state_dict(d["screen"])

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "latency_queries": self.screen.queries,
                "best_reward": max(self.results.values(), default=None)}


def screen_random(space: SearchSpace, seed: int = 0, **options: Any) -> PredictorGuided:
    """The screen's ablation: the predictor's surrogate choosing among uniformly random candidates."""
    return PredictorGuided(space, seed, **{"pool": "random", **options})
