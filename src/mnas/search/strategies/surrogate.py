"""The models behind the predictor-guided strategy, and the latency-aware screen that PPO can use too.

* ``Process``: a Gaussian process on decision tokens with the kernel "number of equal decisions plus number
  of equal pairs of decisions" (a linear model on one-hot features and all their pairwise products: main
  effects and two-way interactions, no length scale to tune); the noise level is chosen by marginal
  likelihood from a grid, for free once the kernel matrix is eigendecomposed.
* ``Screen``: chooses which candidates to train when the latency of a candidate can be measured before
  training (in about a second, against minutes for a training). The reward is accuracy times a latency
  term, and the latency term is known exactly once the latency is measured, so the screen models the two
  apart: accuracy by a process on the results' accuracies (as normal scores of their ranks), the latency
  term read off the results (reward / accuracy against latency), the latency of the unmeasured candidates
  by a second process on every latency measured so far. It ranks the candidates by expected improvement
  of the reward over both uncertainties, measures the latency of the best ``per_training`` x n, ranks those
  again with their latency known, and returns the best n it could measure.
  docs/results/2026-11-27-latency-aware-screen.md has the measurements behind it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

Tokens = tuple[int, ...]

# signal-to-noise ratios tried by marginal likelihood (noise variance / signal variance)
_NOISE_GRID = np.array([1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0])
# the latency process learns from the most recent measurements only: its cost grows with their cube
LATENCY_MEMORY = 500
# latencies measured per training at most, by default: a measurement takes about a second, a training minutes;
# 10, 20 and every candidate (60) found models equally good within the spread of 30 seeds
# (docs/results/2026-11-27-latency-aware-screen.md)
PER_TRAINING = 20
# the accuracy process's standard deviation is taken this many times larger in the expected improvement:
# measured on four NAS-Bench-201-based tables, 3 found better models at 200 and 500 trainings than 1, 2 or 4
# (docs/results/2026-11-27-latency-aware-screen.md); the process alone is overconfident about cells far from the results
EXPLORE = 3.0
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(8)  # E over a standard normal, 8 points
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


class Process:
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
        scale = np.maximum((z ** 2 / denom).sum(1) / n, 1e-12)  # 0 when every target is equal
        loglik = -0.5 * n * np.log(scale) - 0.5 * np.log(denom).sum(1)
        k = int(np.argmax(loglik))
        inv = 1.0 / denom[k]
        kx = self.eigvec.T @ self._kernel(self._onehot(tokens)).T  # [n, C]
        mean = kx.T @ (inv * z)
        var = scale[k] * np.maximum(1.0 - (kx ** 2 * inv[:, None]).sum(0), 1e-12)
        return mu + sd * mean, sd * np.sqrt(var)


def normal_scores(y: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard normal quantiles: the order is kept, and a heavy tail of broken models
    (10 % accuracy among 70-94 %) no longer dominates what the process has to explain."""
    return ndtri((rankdata(y) - 0.5) / len(y))


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / std
    return (mean - best) * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


class Quantiles:
    """Accuracies and their normal scores, and the map back from a score to an accuracy: linear between
    the observed ones, extended beyond the best along the slope of the top five."""

    def __init__(self, acc: np.ndarray) -> None:
        self.scores = normal_scores(acc)
        order = np.argsort(self.scores, kind="stable")
        self.z, self.a = self.scores[order], acc[order]
        k = min(5, len(acc))
        dz = self.z[-1] - self.z[-k]
        self.slope = max(float(self.a[-1] - self.a[-k]) / dz, 0.0) if dz > 0 else 0.0

    def __call__(self, z: np.ndarray) -> np.ndarray:
        inside = np.interp(z, self.z, self.a)
        return np.where(z > self.z[-1], self.a[-1] + self.slope * (z - self.z[-1]), inside)


class LatencyTerm:
    """The reward's latency factor (reward / accuracy) as a function of latency, read off the results:
    linear in log-log between them, extended along the end segments (exact for the soft and hard presets
    away from the target, whatever the target and exponents)."""

    def __init__(self, lat: np.ndarray, factor: np.ndarray) -> None:
        self.x, inv = np.unique(np.log(lat), return_inverse=True)
        self.y = np.bincount(inv, np.log(factor)) / np.bincount(inv)

    def __call__(self, ms: np.ndarray) -> np.ndarray:
        x, y, q = self.x, self.y, np.log(ms)
        if len(x) == 1:
            return np.full(q.shape, math.exp(y[0]))
        lo = y[0] + (q - x[0]) * (y[1] - y[0]) / (x[1] - x[0])
        hi = y[-1] + (q - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2])
        return np.exp(np.where(q < x[0], lo, np.where(q > x[-1], hi, np.interp(q, x, y))))


def expected_gain(acc_mean: np.ndarray, acc_std: np.ndarray, quantile: Quantiles, lat_mean: np.ndarray,
                  lat_std: np.ndarray, term: LatencyTerm, best: float) -> np.ndarray:
    """E[max(0, accuracy * term(latency) - best)], accuracy score ~ N(acc_mean, acc_std) and log latency
    ~ N(lat_mean, lat_std) independent (Gauss-Hermite, 8 x 8 points), plus a tie-break by the expected
    reward (far below the best many gains are zero)."""
    acc = quantile(acc_mean[:, None] + acc_std[:, None] * _NODES[None, :])  # [C, 8]
    factor = term(np.exp(lat_mean[:, None] + lat_std[:, None] * _NODES[None, :]))  # [C, 8]
    reward = acc[:, :, None] * factor[:, None, :]
    w = _WEIGHTS[:, None] * _WEIGHTS[None, :]
    return (np.maximum(reward - best, 0.0) * w).sum((1, 2)) + 1e-9 * (reward * w).sum((1, 2))


LatencyOracle = Callable[[list[Tokens]], list["float | None"]]


class Screen:
    """What a strategy needs to choose candidates by their measured latency and modelled accuracy: the
    results' (reward, accuracy, latency), every latency measured (None: cannot be measured), the count of
    queries. ``usable`` says whether ``choose`` can run (results with accuracy and latency)."""

    def __init__(self, cardinalities: Sequence[int], per_training: int, explore: float = EXPLORE) -> None:
        self.cards = tuple(cardinalities)
        self.per_training, self.explore = per_training, explore
        self.results: dict[Tokens, tuple[float, float, float]] = {}  # reward, accuracy, latency
        self.measured: dict[Tokens, float | None] = {}
        self.queries = 0
        self.partial = False  # some result came without its accuracy and latency
        self.fitted: tuple[int, int] | None = None  # the first (results, measurements) the models learned from
        self._fit: tuple | None = None  # those models (not state: rebuilt from the results)

    def tell(self, tokens: Tokens, reward: float, objectives: dict | None) -> None:
        acc, lat = (objectives or {}).get("accuracy"), (objectives or {}).get("latency_ms")
        if acc is None or lat is None or not (acc > 0 and lat > 0 and reward > 0):
            self.partial = True
            return
        self.results[tokens] = (float(reward), float(acc), float(lat))
        self.measured[tokens] = float(lat)

    def usable(self, minimum: int = 2) -> bool:
        return not self.partial and len(self.results) >= minimum

    def measure(self, tokens: Sequence[Tokens], oracle: LatencyOracle) -> None:
        todo = list(dict.fromkeys(t for t in tokens if t not in self.measured))
        if todo:
            self.queries += len(todo)
            for t, ms in zip(todo, oracle(todo)):
                ok = ms is not None and math.isfinite(ms) and ms > 0
                self.measured[t] = float(ms) if ok else None  # type: ignore[arg-type]

    def refit(self) -> None:
        """Fit the models to the results and latencies so far; ``choose`` uses the last fit (a fit per
        choice would cost PPO a Gaussian process per proposal)."""
        self.fitted = (len(self.results), len(self.measured))
        self._fit = None

    def _models(self) -> tuple:
        if self.fitted is None:
            self.refit()
        if self._fit is None:
            n, m = self.fitted  # type: ignore[misc]
            results = dict(list(self.results.items())[:n])
            reward, acc, lat = (np.array(v) for v in zip(*results.values()))
            quantile = Quantiles(acc)
            known = [t for t, ms in list(self.measured.items())[:m] if ms is not None][-LATENCY_MEMORY:]
            self._fit = (Process(list(results), self.cards), quantile, LatencyTerm(lat, reward / acc),
                         float(reward.max()), Process(known, self.cards),
                         np.log([self.measured[t] for t in known]))
        return self._fit

    def choose(self, pool: list[Tokens], n: int, oracle: LatencyOracle) -> list[Tokens]:
        """The best ``n`` of ``pool`` (new candidates) whose latency can be measured, best first."""
        acc_process, quantile, term, best, lat_process, lat_y = self._models()
        acc_mean, acc_std = acc_process.predict(quantile.scores, pool)
        acc_std = acc_std * self.explore
        lat_mean, lat_std = lat_process.predict(lat_y, pool)
        for i, t in enumerate(pool):
            ms = self.measured.get(t)
            if ms is not None:  # measured since the fit, or a result
                lat_mean[i], lat_std[i] = math.log(ms), 0.0
        score = expected_gain(acc_mean, acc_std, quantile, lat_mean, lat_std, term, best)
        top = np.argsort(-score)[:self.per_training * n]
        self.measure([pool[i] for i in top], oracle)
        top = np.array([i for i in top if self.measured[pool[i]] is not None], dtype=np.int64)
        if not len(top):
            return []
        exact = np.log([self.measured[pool[i]] for i in top])
        score = expected_gain(acc_mean[top], acc_std[top], quantile, exact, np.zeros(len(top)), term, best)
        return [pool[top[i]] for i in np.argsort(-score)[:n]]

    def state_dict(self) -> dict:
        return {"results": [[list(t), *v] for t, v in self.results.items()],
                "measured": [[list(t), ms] for t, ms in self.measured.items()],
                "queries": self.queries, "partial": self.partial, "fitted": self.fitted}

    def load_state_dict(self, d: dict) -> None:
        self.results = {tuple(t): (float(r), float(a), float(m)) for t, r, a, m in d["results"]}
        self.measured = {tuple(t): ms for t, ms in d["measured"]}
        self.queries, self.partial = int(d["queries"]), bool(d["partial"])
        self.fitted, self._fit = (tuple(d["fitted"]) if d.get("fitted") else None), None  # type: ignore[assignment]
