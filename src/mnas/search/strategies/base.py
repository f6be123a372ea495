"""The ask/tell contract every strategy follows, and the registry.

* ``ask() -> tokens``: one architecture as a tuple of decision indices of ``space``. The loop may ask
  several times before telling anything; results may come back in any order.
* ``tell(tokens, reward, objectives=None)``: ``reward`` None marks a failed trial; ``objectives`` is
  e.g. {"accuracy": ..., "latency_ms": ...} for multi-objective strategies. The loop does not
  retrain duplicates, it tells the cached result again, so repeated tells of one architecture are
  normal and every strategy accepts them (and tells of tokens it never proposed).
* ``state_dict() -> dict`` (JSON-serialisable) and ``load_state_dict(d)``: a strategy built with the
  same space and options and restored from ``d`` proposes exactly what the original would have.
* ``diagnostics() -> dict``: optional numbers for plots (e.g. PPO's policy entropy).
"""

from __future__ import annotations

import base64
import importlib
import random
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from mnas import MnasError
from mnas.space.decisions import SearchSpace

Tokens = tuple[int, ...]


@runtime_checkable
class Strategy(Protocol):
    name: str
    space: SearchSpace

    def ask(self) -> Tokens: ...

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...

    def diagnostics(self) -> dict: ...


class BaseStrategy:
    """Common plumbing: the space, the seed, options, token checks and counts."""

    name = "base"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space, self.seed = space, int(seed)
        self.n_asked = self.n_told = self.n_failed = 0

    def _check(self, tokens: Any) -> Tokens:
        return self.space.check_tokens(tuple(tokens))

    def diagnostics(self) -> dict:
        return self._counts()

    def _counts(self) -> dict:
        return {"asked": self.n_asked, "told": self.n_told, "failed": self.n_failed}

    def _load_counts(self, d: dict) -> None:
        self.n_asked, self.n_told, self.n_failed = d["asked"], d["told"], d["failed"]

    def _check_state(self, d: dict) -> None:
        if d.get("strategy") != self.name:
            raise MnasError(f"state belongs to strategy {d.get('strategy')!r}, not {self.name!r}")
        if d.get("cardinalities") != list(self.space.cardinalities):
            raise MnasError(f"{self.name}: saved state is for a space with decisions "
                            f"{d.get('cardinalities')}, this one has {list(self.space.cardinalities)}")

    def _header(self) -> dict:
        return {"strategy": self.name, "seed": self.seed, "cardinalities": list(self.space.cardinalities),
                "counts": self._counts()}


# JSON helpers for RNG states ------------------------------------------------------------------

def py_rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_py_rng_state(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def np_rng_state(rs: np.random.RandomState) -> dict:
    kind, keys, pos, has_gauss, gauss = rs.get_state()
    return {"kind": kind, "keys": b64(np.asarray(keys, dtype=np.uint32).tobytes()), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def set_np_rng_state(rs: np.random.RandomState, d: dict) -> None:
    keys = np.frombuffer(unb64(d["keys"]), dtype=np.uint32).copy()
    rs.set_state((d["kind"], keys, d["pos"], d["has_gauss"], d["gauss"]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


# registry --------------------------------------------------------------------------------------

STRATEGIES: dict[str, str] = {
    "random": "mnas.search.strategies.random_search:RandomSearch",
    "evolution": "mnas.search.strategies.evolution:RegularizedEvolution",
    "ppo": "mnas.search.strategies.ppo:PPOStrategy",
    "optuna-tpe": "mnas.search.strategies.optuna_strategies:OptunaTPE",
    "optuna-nsga2": "mnas.search.strategies.optuna_strategies:OptunaNSGA2",
}


def strategy_class(name: str) -> Callable[..., Strategy]:
    if name not in STRATEGIES:
        raise MnasError(f"unknown strategy {name!r}: expected one of {', '.join(STRATEGIES)}")
    module, cls = STRATEGIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Strategy:
    """A fresh strategy; unknown options are a user error naming the strategy's options."""
    cls = strategy_class(name)
    try:
        return cls(space, seed=seed, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise MnasError(f"strategy {name}: {e}") from None
        raise
