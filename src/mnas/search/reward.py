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
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from mnas import MnasError
from mnas.schema import Schema

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
    try:
        return (value / target) ** (alpha if value <= target else beta)
    except OverflowError:  # finite settings, e.g. an exponent of 1e6: the trial fails, not the search
        raise MnasError(f"reward: ({value!r} / {target!r}) ** {alpha if value <= target else beta!r} overflows: the "
                        "reward's exponents are too large") from None


class Constraint(Schema):
    """One more cost term: ``metric`` is "params" or "macs" (or "latency_ms" for a second latency
    bound), multiplied in as (value / target) ** (alpha if value <= target else beta)."""

    metric: Literal["latency_ms", "params", "macs"]
    target: float = Field(gt=0)
    alpha: float = 0.0
    beta: float = -1.0


class RewardConfig(Schema):
    """The ``reward:`` section. T is ``target_ms``, or the latency of ``target_model`` measured on the
    search's backend (the driver fills ``target_ms`` in); no T means accuracy only (w = 0). alpha and beta
    default to the preset's."""

    preset: Optional[Literal["soft", "hard"]] = "soft"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    target_ms: Optional[float] = Field(None, gt=0)
    target_model: Optional[str] = None
    constraints: list[Constraint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _resolve(self) -> RewardConfig:
        if self.target_ms is not None and self.target_model is not None:
            raise ValueError("give target_ms or target_model, not both")
        if self.preset is None and (self.alpha is None or self.beta is None):
            raise ValueError("without a preset, give both alpha and beta")
        if self.preset is not None:
            alpha, beta = PRESETS[self.preset]
            # object.__setattr__: assignment validation would re-run this validator
            if self.alpha is None:
                object.__setattr__(self, "alpha", alpha)
            if self.beta is None:
                object.__setattr__(self, "beta", beta)
        return self

    @classmethod
    def from_preset(cls, preset: str, target_ms: float | None = None,
                    constraints: list[Constraint] | None = None) -> RewardConfig:
        if preset not in PRESETS:
            raise MnasError(f"unknown reward preset {preset!r}: expected {' or '.join(PRESETS)}")
        return cls(preset=preset, target_ms=target_ms, constraints=list(constraints or []))

    def with_target(self, target_ms: float | None) -> RewardConfig:
        """The same exponents with T filled in (e.g. once a reference model has been measured)."""
        return RewardConfig(preset=self.preset, alpha=self.alpha, beta=self.beta, target_ms=target_ms,
                            constraints=self.constraints)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

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
    if not math.isfinite(r):  # finite inputs, yet e.g. (LAT/T) ** 1e6 overflows: no reward to rank by
        raise MnasError(f"reward: {r!r} is not finite (accuracy {acc!r}, latency {lat_ms!r} ms): the exponents "
                        f"alpha {cfg.alpha!r}, beta {cfg.beta!r} are too large for these values")
    return r
