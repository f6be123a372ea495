"""Tables generated at run time from a seed, in families whose landscapes are unlike the ones the strategies
were tuned on (docs/strategies.md, "Generated tables").

A table is named ``generated:FAMILY:SEED`` (``generated:SEED`` picks the family from the seed) and is made
in memory over the NAS-Bench-201 cell space, deterministically from its name; the table records every
parameter it was made with (``Table.source``), so a report names exactly what ran. How a table is made:

* **accuracy** comes from a landscape over the six decisions with interactions beyond pairs, never from the
  features the surrogate's kernel models (equal decisions, equal pairs): random Fourier features of the
  one-hot cell (``features``), a sum of random decision trees of depth 4 (``trees``) or a sum of random
  functions of three decisions (``triples``). Its values become normal scores by rank, then accuracy through
  the family's ``tail``: ``normal``, ``heavy`` (a long upper tail: a few cells far above the rest) or
  ``flat`` (a plateau of many near-best cells, a long lower tail);
* **latency** is the exp of ``rho`` x the accuracy's normal score plus sqrt(1 - rho**2) x that of an
  additive per-edge, per-op cost with noise: accuracy is never computed from latency, and the sign of
  ``rho`` is that of the rank correlation between accuracy and latency;
* a **test** accuracy (what regret is scored on) and a noisier **validation** accuracy (what a strategy is
  told), both the landscape's accuracy plus Gaussian noise;
* **missing** cells: every cell with one op on one edge and one op on another (a pair a backend cannot
  convert), plus cells at random up to the family's fraction;
* T at the family's latency quantile ``target_quantile`` (the benchmark's ``--target-quantile`` overrides).

Each family fixes the properties it is named for and draws the rest from the seed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtri

from mnas import MnasError
from mnas.search.bench.table import Table, load_table
from mnas.space.nb201 import Nb201Cell, Nb201Space

PREFIX = "generated:"
VERSION = 1  # bump when a table's values for the same name change

# what each family fixes; a (low, high) pair is drawn uniformly from the seed
FAMILIES: dict[str, dict[str, Any]] = {
    "positive": {"landscape": "trees", "rho": (0.4, 0.7), "tail": "flat", "missing": 0.0, "target_quantile": 0.25},
    "negative": {"landscape": "features", "rho": (-0.7, -0.4), "tail": "normal", "missing": 0.0,
                 "target_quantile": 0.5},
    "independent": {"landscape": "triples", "rho": 0.0, "tail": "normal", "missing": 0.0, "target_quantile": 0.1},
    "heavy-tail": {"landscape": "features", "rho": (0.1, 0.3), "tail": "heavy", "missing": 0.0,
                   "target_quantile": 0.75},
    "flat-top": {"landscape": "triples", "rho": (-0.3, -0.1), "tail": "flat", "missing": 0.0,
                 "target_quantile": 0.9},
    "missing": {"landscape": "trees", "rho": (0.2, 0.5), "tail": "normal", "missing": (0.2, 0.4),
                "target_quantile": 0.25},
}


def family_names() -> list[str]:
    return list(FAMILIES)


def is_generated(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def parse_name(spec: str) -> tuple[str, int]:
    """``generated:FAMILY:SEED`` or ``generated:SEED`` -> (family, seed)."""
    parts = str(spec)[len(PREFIX):].split(":")
    usage = (f"table {spec!r}: expected generated:FAMILY:SEED or generated:SEED, FAMILY one of "
             f"{', '.join(FAMILIES)}, SEED a non-negative integer")
    if len(parts) not in (1, 2) or not parts[-1].isdigit():
        raise MnasError(usage)
    seed = int(parts[-1])
    family = parts[0] if len(parts) == 2 else family_names()[seed % len(FAMILIES)]
    if family not in FAMILIES:
        raise MnasError(usage)
    return family, seed


def generated_names(seed: int, n: int) -> list[str]:
    """``n`` table names, each family in turn, seeds ``seed``, ``seed + 1``, ...: tables of different
    families from one seed."""
    names = family_names()
    return [f"{PREFIX}{names[i % len(names)]}:{seed + i}" for i in range(n)]


def _normal_scores(x: np.ndarray) -> np.ndarray:
    ranks = np.argsort(np.argsort(x, kind="stable"), kind="stable")
    return ndtri((ranks + 0.5) / len(x))


def _landscape(kind: str, tok: np.ndarray, n_ops: int, rng: np.random.Generator, params: dict) -> np.ndarray:
    n, n_e = tok.shape
    if kind == "features":  # random Fourier features of the one-hot cell: every order of interaction
        onehot = np.zeros((n, n_e * n_ops))
        onehot[np.arange(n)[:, None], np.arange(n_e) * n_ops + tok] = 1.0
        k, scale = 64, float(rng.uniform(0.7, 1.3))
        params.update(features=k, frequency_scale=round(scale, 4))
        w = rng.normal(0, scale, (n_e * n_ops, k))
        b = rng.uniform(0, 2 * math.pi, k)
        a = rng.normal(0, 1, k)
        return np.cos(onehot @ w + b) @ a
    if kind == "trees":  # random decision trees: each leaf a conjunction of up to `depth` decisions
        count, depth = 8, 4
        params.update(trees=count, depth=depth)
        out = np.zeros(n)
        for _ in range(count):
            out += _tree(tok, np.arange(n), depth, n_ops, rng)
        return out
    if kind == "triples":  # random functions of three decisions each
        count = 10
        params.update(triples=count)
        out = np.zeros(n)
        for _ in range(count):
            e = rng.choice(n_e, 3, replace=False)
            f = rng.normal(0, 1, (n_ops,) * 3)
            out += f[tok[:, e[0]], tok[:, e[1]], tok[:, e[2]]]
        return out
    raise MnasError(f"unknown landscape {kind!r}")


def _tree(tok: np.ndarray, rows: np.ndarray, depth: int, n_ops: int, rng: np.random.Generator) -> np.ndarray:
    """Values of a random tree for ``rows``: a node splits on one decision's value being in a random
    subset of the ops."""
    if depth == 0 or len(rows) == 0:
        return np.full(len(rows), rng.normal(0, 1))
    d = int(rng.integers(tok.shape[1]))
    subset = rng.permutation(n_ops)[: int(rng.integers(1, n_ops))]
    left = np.isin(tok[rows, d], subset)
    out = np.empty(len(rows))
    out[left] = _tree(tok, rows[left], depth - 1, n_ops, rng)
    out[~left] = _tree(tok, rows[~left], depth - 1, n_ops, rng)
    return out


def _tail(z: np.ndarray, tail: str, rng: np.random.Generator, params: dict) -> np.ndarray:
    """Quality in [0, 1], increasing in ``z``, with the family's shape of the top."""
    if tail == "normal":
        q = z
    else:
        k = float(rng.uniform(0.8, 1.2))
        params["tail_steepness"] = round(k, 4)
        q = np.exp(k * z) if tail == "heavy" else -np.exp(-k * z)
    return (q - q.min()) / (q.max() - q.min())


def _draw(value: Any, rng: np.random.Generator) -> Any:
    return round(float(rng.uniform(*value)), 4) if isinstance(value, tuple) else value


def generated_table(spec: str) -> Table:
    """The table named ``spec`` (``generated:FAMILY:SEED`` or ``generated:SEED``)."""
    family, seed = parse_name(spec)
    spec_of = FAMILIES[family]
    rng = np.random.default_rng([VERSION, seed, list(FAMILIES).index(family)])
    params: dict[str, Any] = {name: _draw(value, rng) for name, value in spec_of.items()}
    space = Nb201Space()
    n_e, n_o = len(space.decisions), len(space.ops)
    tok = np.array(np.unravel_index(np.arange(space.size), space.cardinalities)).T  # [N, 6], index order
    z_acc = _normal_scores(_landscape(params["landscape"], tok, n_o, rng, params))
    quality = _tail(z_acc, params["tail"], rng, params)
    low, high = float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.85, 0.97))
    test_noise, valid_noise = 0.002, float(rng.uniform(0.003, 0.01))
    truth = low + (high - low) * quality
    test = np.clip(truth + rng.normal(0, test_noise, len(truth)), 0, 1)
    valid = np.clip(truth + rng.normal(0, valid_noise, len(truth)), 0, 1)
    # latency: an additive per-edge, per-op cost with noise, tied to accuracy by rho (never the reverse)
    cost = rng.gamma(2.0, 1.0, (n_e, n_o)) * rng.uniform(0.3, 1.0, (n_e, 1))
    raw = (0.2 + cost[np.arange(n_e), tok].sum(1)) * np.exp(rng.normal(0, 0.1, len(tok)))
    # the cost's part along accuracy removed, so that rho alone says how the two are related (two random
    # functions of six decisions correlate by chance: 0.1 is common)
    c = _normal_scores(np.log(raw))
    c = _normal_scores(c - (c @ z_acc) / (z_acc @ z_acc) * z_acc)
    rho = params["rho"]
    z_lat = rho * z_acc + math.sqrt(1 - rho**2) * c
    median_ms, spread = float(rng.uniform(2.0, 20.0)), float(rng.uniform(0.3, 0.6))
    latency = median_ms * np.exp(spread * z_lat)
    keep = np.ones(len(tok), bool)
    if params["missing"]:
        (e1, e2), (o1, o2) = rng.choice(n_e, 2, replace=False), rng.integers(n_o, size=2)
        keep &= ~((tok[:, e1] == o1) & (tok[:, e2] == o2))
        params["missing_pair"] = {f"edge{int(e1)}": space.ops[int(o1)], f"edge{int(e2)}": space.ops[int(o2)]}
        more = params["missing"] * len(tok) - (~keep).sum()
        if more > 0:
            keep[rng.choice(np.flatnonzero(keep), int(round(more)), replace=False)] = False
    params.update(accuracy_range=[round(low, 4), round(high, 4)], test_noise=test_noise,
                  valid_noise=round(valid_noise, 4), median_latency_ms=round(median_ms, 4),
                  latency_log_spread=round(spread, 4))
    rows = np.flatnonzero(keep)
    row_of = np.full(space.size, -1, dtype=np.int64)
    row_of[rows] = np.arange(len(rows))  # tok is in index order: the cell's index is its position
    source = {"name": f"{PREFIX}{family}:{seed}", "family": family, "seed": seed, "version": VERSION, **params}
    form = Nb201Cell(("{}",) * n_e).canonical  # the cell string with a slot per edge: decode's, faster
    names = np.array(space.ops, dtype=object)[tok[rows]]
    return Table(space, [form.format(*ops) for ops in names.tolist()], test[rows],
                 latency[rows], row_of, "generated_test_accuracy", "generated_latency_ms", 1.0,
                 valid_accuracy=valid[rows], valid_column="generated_valid_accuracy", source=source)


def open_table(spec: str | Path, accuracy: str | None = None, latency: str | None = None,
               valid_accuracy: str | None = None, space: str | None = None) -> Table:
    """A table by name: ``generated:FAMILY:SEED`` (or ``generated:SEED``), or a CSV's path (``load_table``)
    whose ``arch`` column holds architectures of ``space`` (a space name or YAML; default NAS-Bench-201)."""
    if is_generated(str(spec)):
        if accuracy or latency or valid_accuracy or space:
            raise MnasError(f"table {spec}: a generated table has fixed columns and space; drop --accuracy, "
                            "--latency, --valid-accuracy and --space")
        return generated_table(str(spec))
    from mnas.space import load_space

    return load_table(spec, accuracy, latency, space=load_space(space) if space else None,
                      valid_accuracy=valid_accuracy)
