"""The MnasNet multi-objective reward (Tan et al. 2019, Eq. 2-3), with optional extra constraints.

    R(m) = ACC(m) * (LAT(m) / T) ** w,   w = alpha if LAT(m) <= T else beta

How alpha and beta trade accuracy for latency: multiplying latency by a factor k multiplies the
reward by k**w, so a model k times slower earns the same reward only if it is k**(-w) times more
accurate. The paper's observation "doubling latency buys about 5 % relative accuracy" gives
2**(-beta) = 1.05, i.e. beta = -ln(1.05)/ln(2) = -0.0704 ~ -0.07 (`exponent_for_tradeoff`).
With alpha = beta (soft preset) the reward is smooth across T, so one search spreads over a Pareto
range of latencies. With alpha = 0, beta = -1 (hard preset) models under T earn their plain
accuracy and models above T lose reward in proportion to the overshoot (ACC * T / LAT).

Extra constraints (parameters, MACs) multiply in the same way, each with its own target and
exponents: R = ACC * prod_i (x_i / T_i) ** w_i.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from mnas import MnasError

PRESETS: dict[str, tuple[float, float]] = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}
METRICS = ("latency_ms", "params", "macs")


def exponent_for_tradeoff(relative_accuracy_gain: float = 0.05, latency_factor: float = 2.0) -> float:
    """The exponent under which `latency_factor` x the latency is worth `relative_accuracy_gain`
    more accuracy (0.05, 2.0 -> -0.0704, the paper's -0.07)."""
    if relative_accuracy_gain <= -1 or latency_factor <= 0 or latency_factor == 1:
        raise MnasError("exponent_for_tradeoff: need relative_accuracy_gain > -1 and latency_factor > 0, != 1")
    return -math.log1p(relative_accuracy_gain) / math.log(latency_factor)


def _factor(value: float, target: float, alpha: float, beta: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise MnasError(f"reward: cost value {value!r} must be a positive finite number")
    return (value / target) ** (alpha if value <= target else beta)


@dataclass
class Constraint:
    """One more cost term: ``metric`` is "params" or "macs" (or "latency_ms" for a second latency
    bound), multiplied in as (value / target) ** (alpha if value <= target else beta)."""

    metric: str
    target: float
    alpha: float = 0.0
    beta: float = -1.0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise MnasError(f"constraint metric {self.metric!r}: expected one of {', '.join(METRICS)}")
        if not self.target > 0:
            raise MnasError(f"constraint {self.metric}: target must be > 0, got {self.target}")


@dataclass
class RewardConfig:
    """T (``target_ms``) None means accuracy only for the latency term (w = 0)."""

    target_ms: float | None = None
    alpha: float = -0.07
    beta: float = -0.07
    preset: str | None = "soft"
    constraints: list[Constraint] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target_ms is not None and not self.target_ms > 0:
            raise MnasError(f"reward: target latency must be > 0 ms, got {self.target_ms}")
        self.constraints = [c if isinstance(c, Constraint) else Constraint(**c) for c in self.constraints]

    @classmethod
    def from_preset(cls, preset: str, target_ms: float | None = None,
                    constraints: list[Constraint] | None = None) -> RewardConfig:
        if preset not in PRESETS:
            raise MnasError(f"unknown reward preset {preset!r}: expected {' or '.join(PRESETS)}")
        alpha, beta = PRESETS[preset]
        return cls(target_ms, alpha, beta, preset, list(constraints or []))

    def with_target(self, target_ms: float) -> RewardConfig:
        """The same exponents with T filled in (e.g. once a reference model has been measured)."""
        return RewardConfig(target_ms, self.alpha, self.beta, self.preset, list(self.constraints))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RewardConfig:
        return cls(**d)


def reward(acc: float, lat_ms: float, cfg: RewardConfig, params: float | None = None,
           macs: float | None = None) -> float:
    """ACC * (LAT/T)^w * prod over constraints; ``acc`` in whatever unit the caller uses (0..1)."""
    r = float(acc)
    if cfg.target_ms is not None:
        r *= _factor(float(lat_ms), cfg.target_ms, cfg.alpha, cfg.beta)
    values = {"latency_ms": lat_ms, "params": params, "macs": macs}
    for c in cfg.constraints:
        v = values[c.metric]
        if v is None:
            raise MnasError(f"reward: a {c.metric} constraint is configured but no {c.metric} was given")
        r *= _factor(float(v), c.target, c.alpha, c.beta)
    return r
