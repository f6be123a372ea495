"""A search space is an ordered list of named categorical decisions; an architecture is one choice
per decision. Strategies see only token indices, so every space plugs in the same way."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mnas import MnasError


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.choices)


class Arch(Protocol):
    @property
    def canonical(self) -> str: ...


class SearchSpace:
    """Base class: subclasses set ``name`` and ``decisions`` and implement decode/encode/parse."""

    name: str
    decisions: tuple[Decision, ...]
    source: str = "builtin"  # where the space was read from (a file path for YAML spaces)

    @property
    def size(self) -> int:
        return math.prod(len(d) for d in self.decisions)

    @property
    def cardinalities(self) -> tuple[int, ...]:
        return tuple(len(d) for d in self.decisions)

    def sample_tokens(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.randrange(len(d)) for d in self.decisions)

    def sample(self, rng: random.Random) -> Arch:
        return self.decode(self.sample_tokens(rng))

    def check_tokens(self, tokens: Sequence[int]) -> tuple[int, ...]:
        if len(tokens) != len(self.decisions):
            raise MnasError(f"{self.name}: expected {len(self.decisions)} tokens, got {len(tokens)}")
        for t, d in zip(tokens, self.decisions):
            if not 0 <= t < len(d):
                raise MnasError(f"{self.name}: token {t} out of range for decision {d.name!r}")
        return tuple(int(t) for t in tokens)

    def values(self, tokens: Sequence[int]) -> dict[str, Any]:
        return {d.name: d.choices[t] for d, t in zip(self.decisions, self.check_tokens(tokens))}

    def decode(self, tokens: Sequence[int]) -> Arch:
        raise NotImplementedError

    def encode(self, arch: Arch) -> tuple[int, ...]:
        """Tokens of ``arch``; raises MnasError naming the first decision it does not fit."""
        raise NotImplementedError

    def parse(self, text: str) -> Arch:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the store records and ``mnas space show`` prints; subclasses add their structure."""
        return {"name": self.name, "size": self.size,
                "decisions": [{"name": d.name, "choices": list(d.choices)} for d in self.decisions]}

    def contains(self, arch: Arch) -> bool:
        try:
            self.encode(arch)
        except MnasError:
            return False
        return True
