"""The NAS-Bench-201 cell space: 6 edges of a 4-node DAG, each one of 5 operations (5**6 = 15,625).

Architectures print in the NAS-Bench-201 string format
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``: group j lists the edges into node j+1, ``op~i`` is the
operation on the edge from node i. Tokens follow that order: (0->1), (0->2), (1->2), (0->3), (1->3),
(2->3). No torch here: the space is pure data, used by the tabular benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mnas import MnasError
from mnas.space.decisions import Decision, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))


@dataclass(frozen=True)
class Nb201Cell:
    ops: tuple[str, ...]  # one per edge, in EDGES order

    @property
    def canonical(self) -> str:
        groups, k = [], 0
        for node in range(1, 4):
            groups.append("|" + "|".join(f"{self.ops[k + i]}~{i}" for i in range(node)) + "|")
            k += node
        return "+".join(groups)

    def __str__(self) -> str:
        return self.canonical


class Nb201Space(SearchSpace):
    name = "nb201"

    def __init__(self, ops: Sequence[str] = OPS) -> None:
        self.ops = tuple(ops)
        self.decisions = tuple(Decision(f"edge{a}->{b}", self.ops) for a, b in EDGES)

    def decode(self, tokens: Sequence[int]) -> Nb201Cell:
        return Nb201Cell(tuple(self.ops[t] for t in self.check_tokens(tokens)))

    def encode(self, arch: Nb201Cell) -> tuple[int, ...]:  # type: ignore[override]
        ops = getattr(arch, "ops", None)
        if ops is None:
            return self.encode(self.parse(arch.canonical))
        if len(ops) != len(EDGES):
            raise MnasError(f"nb201: a cell has {len(EDGES)} edges, got {len(ops)}")
        out = []
        for (a, b), op in zip(EDGES, ops):
            if op not in self.ops:
                raise MnasError(f"nb201: edge {a}->{b}: unknown op {op!r} (expected one of {', '.join(self.ops)})")
            out.append(self.ops.index(op))
        return tuple(out)

    def parse(self, text: str) -> Nb201Cell:
        text = text.strip()
        groups = text.split("+")
        if len(groups) != 3:
            raise MnasError(f"nb201: {text[:80]!r} is not a cell string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
        ops: list[str] = []
        for node, group in enumerate(groups, 1):
            if not (group.startswith("|") and group.endswith("|")):
                raise MnasError(f"nb201: group {group!r} must start and end with '|'")
            items = group[1:-1].split("|")
            if len(items) != node:
                raise MnasError(f"nb201: node {node} needs {node} inputs, got {len(items)} in {group!r}")
            for i, item in enumerate(items):
                op, sep, src = item.rpartition("~")
                if not sep or src != str(i):
                    raise MnasError(f"nb201: {item!r} must read op~{i}")
                if op not in self.ops:
                    raise MnasError(f"nb201: unknown op {op!r} (expected one of {', '.join(self.ops)})")
                ops.append(op)
        return Nb201Cell(tuple(ops))
