"""Predictor-guided search: a cheap model of the reward screens many candidates bred by evolution and
sends only the most promising to training (surrogate-assisted search in the spirit of BANANAS, White et
al. 2021, with a Gaussian process in place of their neural ensemble).

Each time it runs out of proposals the strategy

1. fits a Gaussian process to the rewards told so far (as normal scores of their ranks) on the decision
   tokens, with the kernel "number of equal decisions plus number of equal pairs of decisions" (that of a
   linear model on one-hot features and all their pairwise products: main effects and two-way
   interactions, no length scale to tune); the noise level is chosen by marginal likelihood from a grid,
   for free once the kernel matrix is eigendecomposed;
2. breeds ``candidates`` new architectures: one or two decisions of one of the ``parents`` best so far
   changed (regularized evolution's mutation), plus a tenth uniformly random ones;
3. ranks them by expected improvement over the best reward so far;
4. when it has a ``latency_oracle`` (latency is measured in about a second, a training takes minutes):
   measures the candidates' latency in that order, ``batch_size`` at a time, and skips those whose latency
   cannot be measured: they would fail to train too (random proposals are screened the same way). Ranking
   the measured ones again with their latency in the model (accuracy predicted, the reward's latency term
   read off the results so far) was tried and did not find better models (docs/strategies.md);
5. queues the best ``batch_size``.

The first ``initial`` proposals are uniform random. No architecture is proposed twice. Failed trials
only count as seen.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from mnas import MnasError
from mnas.search.strategies.base import BaseStrategy, LatencyOracle, Tokens
from mnas.space.decisions import SearchSpace

log = logging.getLogger(__name__)

# signal-to-noise ratios tried by marginal likelihood (noise variance / signal variance)
_NOISE_GRID = np.array([1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])


class PredictorGuided(BaseStrategy):
    name = "predictor"

    def __init__(self, space: SearchSpace, seed: int = 0, initial: int = 10, batch_size: int = 5,
                 candidates: int = 300, parents: int = 10) -> None:
        super().__init__(space, seed)
        if initial < 2 or batch_size < 1 or candidates < 10 or parents < 1:
            raise MnasError("predictor: need initial >= 2, batch_size >= 1, candidates >= 10, parents >= 1")
        self.initial, self.batch_size, self.candidates, self.parents = initial, batch_size, candidates, parents
        self.latency_oracle: LatencyOracle | None = None  # given by the loop, not part of the state
        self.rng = np.random.default_rng(seed)
        self.seen: set[Tokens] = set()
        self.results: dict[Tokens, float] = {}  # rewards of the trials that did not fail
        self.latency: dict[Tokens, bool] = {}  # asked of the oracle: measurable or not
        self.queue: list[Tokens] = []
        self.latency_queries = 0

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

    # proposals -----------------------------------------------------------------------------------

    def _random(self, n: int) -> list[Tokens]:
        cards = self.space.cardinalities
        rows = self.rng.integers(0, cards, size=(n, len(cards)))
        return [tuple(int(x) for x in r) for r in rows]

    def _next_batch(self) -> list[Tokens]:
        if len(self.results) < self.initial:
            return self._measurable(self._fresh(self._random(2 * self.batch_size)), self.batch_size) \
                or self._random(1)
        pool = self._fresh(self._breed())
        if not pool:  # the neighbourhood of the best is used up: anything new
            return self._measurable(self._fresh(self._random(self.candidates)), self.batch_size) or self._random(1)
        gp = _Process(list(self.results), self.space.cardinalities)
        scores = _normal_scores(np.array(list(self.results.values())))
        mean, std = gp.predict(scores, pool)
        order = np.argsort(-_expected_improvement(mean, std, scores.max()))
        log.debug("predictor: %d results, %d candidates, best expected improvement %.3g", len(scores),
                  len(pool), float(_expected_improvement(mean, std, scores.max())[order[0]]))
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
            todo = [t for t in part if t not in self.latency]
            if todo:
                self.latency_queries += len(todo)
                for t, ms in zip(todo, self.latency_oracle(todo)):
                    self.latency[t] = ms is not None and math.isfinite(ms) and ms > 0
            chosen += [t for t in part if self.latency[t]]
        return chosen[:n]

    # state ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {**self._header(), "rng": self.rng.bit_generator.state,
                "seen": sorted(list(t) for t in self.seen),
                "results": [[list(t), r] for t, r in self.results.items()],
                "latency": [[list(t), ok] for t, ok in self.latency.items()],
                "queue": [list(t) for t in self.queue], "latency_queries": self.latency_queries}

    def load_state_dict(self, d: dict) -> None:
        self._check_state(d)
        self._load_counts(d["counts"])
        self.rng.bit_generator.state = d["rng"]
        self.seen = {tuple(t) for t in d["seen"]}
        self.results = {tuple(t): float(r) for t, r in d["results"]}
        self.latency = {tuple(t): ok for t, ok in d["latency"]}
        self.queue = [tuple(t) for t in d["queue"]]
        self.latency_queries = d["latency_queries"]

    def diagnostics(self) -> dict:
        return {**super().diagnostics(), "latency_queries": self.latency_queries,
                "best_reward": max(self.results.values(), default=None)}


class _Process:
    """A zero-mean Gaussian process on standardised targets over the training tokens ``x``, kernel
    (1 + m + m(m-1)/2) / (1 + D + D(D-1)/2) with m equal decisions out of D. One eigendecomposition
    serves every target and every noise level."""

    def __init__(self, x: list[Tokens], cardinalities: Sequence[int]) -> None:
        self.offsets = np.concatenate(([0], np.cumsum(cardinalities)[:-1]))
        self.width = int(sum(cardinalities))
        self.d = len(cardinalities)
        self.onehot = self._onehot(x)
        self.eigval, self.eigvec = np.linalg.eigh(self._kernel(self.onehot))

    def _onehot(self, tokens: Sequence[Tokens]) -> np.ndarray:
        rows = np.asarray(tokens, dtype=np.int64) + self.offsets
        out = np.zeros((len(rows), self.width))
        np.put_along_axis(out, rows, 1.0, axis=1)
        return out

    def _kernel(self, onehot: np.ndarray) -> np.ndarray:
        m = onehot @ self.onehot.T  # equal decisions, as one matrix product
        d = self.d
        return (1 + m + m * (m - 1) / 2) / (1 + d + d * (d - 1) / 2)

    def predict(self, y: np.ndarray, tokens: Sequence[Tokens]) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the target at ``tokens``, given ``y`` at ``x``."""
        mu, sd = float(y.mean()), float(y.std()) or 1.0
        z = self.eigvec.T @ ((y - mu) / sd)
        lam = np.maximum(self.eigval, 0.0)
        n = len(y)
        # profile log-likelihood of each noise level, the signal variance at its optimum
        denom = lam[None, :] + _NOISE_GRID[:, None]
        scale = (z ** 2 / denom).sum(1) / n
        loglik = -0.5 * n * np.log(scale) - 0.5 * np.log(denom).sum(1)
        k = int(np.argmax(loglik))
        inv = 1.0 / denom[k]
        kx = self.eigvec.T @ self._kernel(self._onehot(tokens)).T  # [n, C]
        mean = kx.T @ (inv * z)
        var = scale[k] * np.maximum(1.0 - (kx ** 2 * inv[:, None]).sum(0), 1e-12)
        return mu + sd * mean, sd * np.sqrt(var)


def _normal_scores(y: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard normal quantiles: the order is kept, and a heavy tail of broken models
    (10 % accuracy among 70-94 %) no longer dominates what the process has to explain."""
    return ndtri((rankdata(y) - 0.5) / len(y))


def _expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / std
    return (mean - best) * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

