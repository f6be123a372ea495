"""The experiment config: one schema, composed of each layer's own (latency, proxy, executor, reward).

Every default is defined once, in the schema that owns it; ``mnas config show FILE`` prints the resolved
config (recipes and reward presets applied, defaults filled), which is what the store records.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

from pydantic import Field, model_validator

from mnas import MnasError
from mnas.latency import LatencyConfig
from mnas.run import ExecutorConfig
from mnas.run.pruning import PrunerConfig
from mnas.schema import Schema, Seed, check_bounded, read_yaml_file, renamed, validate
from mnas.search.loop import DUPLICATE_STREAK
from mnas.search.reward import RewardConfig
from mnas.space.registry import DEFAULT_SPACE_NAME
from mnas.train import TrainTask


class StrategyConfig(Schema):
    # Evolution: the only strategy whose reward regret was no worse than its own on all 13 tables of the
    # benchmark at equal total cost (docs/results/2026-12-06-strategy-matrix.md); ppo lost on 10 of them
    name: str = Field("evolution", description="a registered strategy (mnas bench strategies lists them)")
    settings: dict[str, Any] = Field(default_factory=dict, description="the strategy's own keyword settings "
                                     "(e.g. ppo's profile, lr, batch_size)")

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return renamed(data, {"options": "settings"}, "strategy")


class ReferencesConfig(Schema):
    """The reference models (MobileNetV2 x0.5-1.4, MnasNet-A1/B1; in a space with a stride-1 stem such as
    mnasnet-cifar, their CIFAR variants). ``references: false`` is short for ``references: {enabled: false}``."""

    enabled: bool = Field(True, description="time the reference models on the search's backend at the start, "
                          "for the report's figures")
    score: bool = Field(False, description="also train each reference with the search's own proxy training "
                        "(the trials' task and seed), so the report draws them as points with an accuracy and a "
                        "reward; counted and shown apart, outside the strategy's trial and time budget")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"enabled": data} if isinstance(data, bool) else data

    @model_validator(mode="after")
    def _score_needs_timing(self) -> ReferencesConfig:
        if self.score and not self.enabled:
            raise ValueError("references.score needs the references timed: set references.enabled to true, "
                             "or references.score to false")
        return self


class ExperimentConfig(Schema):
    name: str = "search"
    seed: Seed = 0
    space: str = Field(DEFAULT_SPACE_NAME, description="a registered space name or a space YAML file")
    trials: Optional[int] = Field(None, ge=1)
    time_budget_s: Optional[float] = Field(None, gt=0)
    max_duplicate_streak: int = Field(DUPLICATE_STREAK, ge=1, description="stop after this many proposals in a row that "
                                      "were all evaluated before (the controller has converged)")
    references: ReferencesConfig = Field(default_factory=ReferencesConfig,
                                         description="the reference models: timed (and scored) at the start")
    live_view: bool = Field(True, description="mirror every trial into EXPERIMENT/optuna.db for optuna-dashboard")
    tensorboard: bool = Field(False, description="write reward, accuracy, latency and the strategy's entropy "
                              "per trial to EXPERIMENT/tensorboard (the tensorboard extra)")
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    proxy: TrainTask = Field(default_factory=TrainTask)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig, description="stop proxy trainings early from "
                                 "their intermediate accuracy (none | median | asha); a pruned trial is told to "
                                 "the strategy as a failed one")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @model_validator(mode="after")
    def _budget(self) -> ExperimentConfig:
        if self.trials is None and self.time_budget_s is None:
            raise ValueError("set a budget: trials, time_budget_s, or both")
        if self.pruner.enabled and self.proxy.estimator not in (None, "train"):
            raise ValueError(f"pruner {self.pruner.name} stops proxy trainings, and proxy.estimator="
                             f"{self.proxy.estimator} trains none: set pruner.name=none or proxy.estimator=train")
        return self

    def resolved(self) -> dict[str, Any]:
        """The whole config with every default, recipe and reward preset value filled in, as JSON-ready data."""
        return self.model_dump(mode="json")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    raw = read_yaml_file(path, "config file") or {}  # bounded: size, nesting, aliases
    if not isinstance(raw, dict):
        raise MnasError(f"config file {path} must hold a mapping of settings")
    return raw


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    return config_from_dict(read_yaml(path), str(path), overrides)


def config_from_dict(raw: dict[str, Any], source: str = "config",
                     overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """``overrides``: dotted keys (``proxy.epochs``) replacing or adding values of ``raw``."""
    if not isinstance(raw, dict):
        raise MnasError(f"{source}: expected a mapping of settings, got {type(raw).__name__}")
    check_bounded(raw, source)  # a dict from Python (mnas.api) is bounded as a YAML file is
    check_bounded(overrides or {}, f"{source} (overrides)")
    raw = dict(raw)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            child = node.get(p)
            node[p] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return validate(ExperimentConfig, raw, source)


def config_from_stored(raw: dict[str, Any], source: str = "stored config") -> ExperimentConfig:
    """A config an experiment recorded, validated like a user's; keys it was written with before a rename are
    read without a deprecation warning (the user cannot rewrite a stored config)."""
    pruner, proxy = raw.get("pruner"), raw.get("proxy")
    if (isinstance(pruner, dict) and pruner.get("name", "none") != "none" and isinstance(proxy, dict)
            and proxy.get("estimator") not in (None, "train")):
        # stored before the check above refused it: the pruner had nothing to stop, and did nothing
        raw = {**raw, "pruner": {**pruner, "name": "none"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return config_from_dict(raw, source)


def stored_config(store) -> ExperimentConfig:
    """The config an experiment's search recorded (``Store.meta().config``), validated; an experiment never
    started is a one-line error."""
    raw = store.meta().config
    if not raw:
        raise MnasError(f"{store.dir} holds no started experiment (no config): run mnas search first")
    return config_from_stored(raw, f"{store.path} (stored config)")
