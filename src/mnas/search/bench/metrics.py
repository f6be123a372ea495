"""What a run is measured against, accuracy as a fraction (the table's percentages divided by 100):

* reward_regret: best reward in the table minus best reward among the evaluated architectures;
* hv_ratio: hypervolume of the evaluated set over that of the whole table, objectives (latency,
  error) both minimised, reference point (largest latency, median error);
* constrained_regret: best accuracy with latency <= T in the table minus the best found (when nothing
  under T was found: minus the table's worst accuracy).

All three use the table's (test) accuracy; a table with a validation accuracy tells the strategies that
one (``told_rewards``), so they search on validation and are scored on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnas import MnasError
from mnas.search.bench.table import Table
from mnas.search.pareto import pareto_front
from mnas.search.reward import RewardConfig, reward


def hypervolume_2d(cost_a: Sequence[float], cost_b: Sequence[float], ref: tuple[float, float]) -> float:
    """Area dominated by the points (both costs minimised) and bounded by ``ref``."""
    a, b = np.asarray(cost_a, float), np.asarray(cost_b, float)
    inside = (a < ref[0]) & (b < ref[1])
    a, b = a[inside], b[inside]
    front = pareto_front(a, -b)  # ordered by cost_a, cost_b falling
    a, b = a[front], b[front]
    above = np.concatenate(([ref[1]], b[:-1]))  # each point adds the strip under its predecessor
    return float(np.dot(ref[0] - a, above - b))


@dataclass
class Oracle:
    """Everything a run's metrics are measured against."""

    table: Table
    cfg: RewardConfig
    rewards: np.ndarray
    best_reward: float
    ref: tuple[float, float]
    true_hv: float
    target_ms: float
    best_constrained: float
    target_quantile: float = 0.25
    told_rewards: np.ndarray | None = None  # the rewards of the validation accuracy (None: ``rewards``)

    @classmethod
    def build(cls, table: Table, preset: str = "soft", target_quantile: float | None = None) -> Oracle:
        """``target_quantile`` None: the table's own (a generated table's), else 0.25."""
        if target_quantile is None:
            target_quantile = table.target_quantile or 0.25
        if not 0 < target_quantile <= 1:
            raise MnasError(f"--target-quantile must lie in (0, 1], got {target_quantile}")
        target = float(np.quantile(table.latency, target_quantile))
        cfg = RewardConfig.from_preset(preset, target_ms=target)
        rewards = np.array([reward(acc, ms, cfg) for acc, ms in zip(table.accuracy, table.latency)])
        err = 1.0 - table.accuracy
        ref = (float(table.latency.max()), float(np.median(err)))
        feasible = table.latency <= target
        told = None if table.valid_accuracy is None else \
            np.array([reward(acc, ms, cfg) for acc, ms in zip(table.valid_accuracy, table.latency)])
        return cls(table, cfg, rewards, float(rewards.max()), ref, hypervolume_2d(table.latency, err, ref),
                   target, float(table.accuracy[feasible].max()), target_quantile, told)

    def metrics(self, rows: Sequence[int]) -> dict[str, float]:
        """The three metrics of the evaluated ``rows`` (-1: an evaluation that failed)."""
        rows = np.asarray([r for r in rows if r >= 0], dtype=np.int64)
        if not len(rows):
            return {"reward_regret": self.best_reward - float(self.rewards.min()), "hv_ratio": 0.0,
                    "constrained_regret": self.best_constrained - float(self.table.accuracy.min())}
        lat, acc = self.table.latency[rows], self.table.accuracy[rows]
        feasible = acc[lat <= self.target_ms]
        found = float(feasible.max()) if len(feasible) else float(self.table.accuracy.min())
        hv = hypervolume_2d(lat, 1.0 - acc, self.ref)
        return {"reward_regret": self.best_reward - float(self.rewards[rows].max()),
                "hv_ratio": hv / self.true_hv if self.true_hv > 0 else 0.0,
                "constrained_regret": self.best_constrained - found}
