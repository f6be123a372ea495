"""The experiment config: YAML validated with pydantic; an error names the key and what it expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mnas import MnasError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StrategyConfig(_Strict):
    name: str = "ppo"
    options: dict[str, Any] = Field(default_factory=dict)


class ConstraintConfig(_Strict):
    metric: Literal["params", "macs", "latency_ms"]
    target: float = Field(gt=0)
    alpha: float = 0.0
    beta: float = -1.0


class RewardSettings(_Strict):
    """T is ``target_ms``, or the latency of ``target_model`` measured on the search's backend."""

    preset: Optional[Literal["soft", "hard"]] = "soft"
    alpha: Optional[float] = None
    beta: Optional[float] = None
    target_ms: Optional[float] = Field(None, gt=0)
    target_model: Optional[str] = None
    constraints: list[ConstraintConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_target(self) -> RewardSettings:
        if self.target_ms is not None and self.target_model is not None:
            raise ValueError("give target_ms or target_model, not both")
        if self.preset is None and (self.alpha is None or self.beta is None):
            raise ValueError("without a preset, give both alpha and beta")
        return self


class LatencyConfig(_Strict):
    backend: str = "onnxruntime"
    resolution: int = Field(224, ge=8)
    threads: int = Field(1, ge=1)
    batch: int = Field(1, ge=1)
    runs: Optional[int] = Field(None, ge=1)
    warmup: Optional[int] = Field(None, ge=0)
    cv_threshold: Optional[float] = Field(None, gt=0, description="re-measure above this spread")
    num_classes: int = Field(1000, ge=1)
    cache: bool = True


class ProxyConfig(_Strict):
    dataset: str = "animal-mnist"
    resolution: int = Field(28, ge=8)
    width_multiplier: float = Field(0.5, gt=0)
    epochs: float = Field(1, gt=0)
    batch_size: int = Field(64, ge=1)
    preset: Optional[str] = None
    train_limit: Optional[int] = Field(None, ge=1, description="use at most this many training images")
    options: dict[str, Any] = Field(default_factory=dict, description="more TrainConfig fields")


class ExecutorConfig(_Strict):
    kind: Literal["local", "ray"] = "local"
    address: Optional[str] = None
    workers: int = Field(1, ge=1)
    cpus_per_trial: float = Field(1, gt=0)
    gpus_per_trial: float = Field(0, ge=0)
    device_resource: Optional[str] = None
    max_retries: int = Field(2, ge=0)


class ExperimentConfig(_Strict):
    name: str = "search"
    seed: int = 0
    space: Optional[str] = None
    trials: Optional[int] = Field(None, ge=1)
    time_budget_s: Optional[float] = Field(None, gt=0)
    max_duplicate_streak: int = Field(200, ge=1)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @model_validator(mode="after")
    def _budget(self) -> ExperimentConfig:
        if self.trials is None and self.time_budget_s is None:
            raise ValueError("set a budget: trials, time_budget_s, or both")
        return self


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise MnasError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise MnasError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise MnasError(f"config file {path} must hold a mapping of settings")
    return config_from_dict(raw, str(path), overrides)


def config_from_dict(raw: dict[str, Any], source: str = "config",
                     overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            err["msg"] = "unknown key (check the spelling against configs/demo.yaml)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise MnasError(f"{source}: {where}: {err['msg']}{got}") from None
