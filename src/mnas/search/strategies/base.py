"""The ask/tell contract every strategy follows, and what the built-in strategies share.

* ``ask() -> tokens``: one architecture as a tuple of decision indices of ``space``. The loop may ask
  several times before telling anything; results may come back in any order.
* ``tell(tokens, reward, objectives=None)``: ``reward`` None marks a failed trial; ``objectives`` is
  e.g. {"accuracy": ..., "latency_ms": ...} for multi-objective strategies. The loop does not
  retrain duplicates, it tells the cached result again, so repeated tells of one architecture are
  normal and every strategy accepts them (and tells of tokens it never proposed).
* ``state_dict() -> dict`` (JSON-serialisable) and ``load_state_dict(d)``: a strategy built with the
  same space and options and restored from ``d`` proposes exactly what the original would have. (Saving
  may start a new random stream, as the Optuna strategies do, so a run with saves can differ from the
  same seed's run without; the same calls always give the same proposals.)
* ``diagnostics() -> dict``: optional numbers for plots (e.g. PPO's policy entropy).
* ``use_latency_oracle(oracle)`` (optional, the ``LatencyAware`` capability): a strategy that has it can
  use candidates' latencies before it chooses what to train, since a latency measurement is cheap next to
  a training. The loop that runs it gives it a ``LatencyOracle`` (``give_latency_oracle``) after building
  or restoring the strategy; the oracle is not part of the state. Latency queries are counted apart from
  trainings. (A strategy with only a ``latency_oracle`` attribute, the earlier way, is still given one,
  with a deprecation warning.)
"""

from __future__ import annotations

import base64
import random
import warnings
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from mnas import MnasError
from mnas.space.decisions import SearchSpace

Tokens = tuple[int, ...]
# latencies in ms of the given architectures, None where one cannot be measured (it would fail to train too)
LatencyOracle = Callable[[list[Tokens]], list["float | None"]]


class Strategy(Protocol):
    name: str
    space: SearchSpace

    def ask(self) -> Tokens: ...

    def tell(self, tokens: Tokens, reward: float | None, objectives: dict | None = None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...

    def diagnostics(self) -> dict: ...


@runtime_checkable
class LatencyAware(Protocol):
    """A strategy that can use a latency oracle; without one (None, the default) it must work all the same."""

    def use_latency_oracle(self, oracle: LatencyOracle | None) -> None: ...


def give_latency_oracle(strategy: Strategy, oracle: LatencyOracle) -> bool:
    """Give ``oracle`` to ``strategy`` if it is ``LatencyAware``; whether it took it."""
    if isinstance(strategy, LatencyAware):
        strategy.use_latency_oracle(oracle)
        return True
    if hasattr(strategy, "latency_oracle"):  # how plugins were given one before LatencyAware: for one release
        name = getattr(strategy, "name", type(strategy).__name__)
        warnings.warn(f"strategy {name!r}: a latency_oracle attribute is deprecated; define use_latency_oracle"
                      "(oracle) (mnas.search.strategies.base.LatencyAware)", DeprecationWarning, stacklevel=2)
        strategy.latency_oracle = oracle  # type: ignore[attr-defined]
        return True
    return False


class BaseStrategy:
    """Common plumbing: the space, the seed, token checks, counts and the state header."""

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


# JSON helpers for random states and bytes ------------------------------------------------------

def py_rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def set_py_rng_state(rng: random.Random, state: list) -> None:
    rng.setstate((state[0], tuple(state[1]), state[2]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))
