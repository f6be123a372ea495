"""Tables for checking a strategy on structure it was not tuned on: NAS-Bench-201's values with the
operations renamed, and a made-up landscape with its own latency model."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from mnas.search.bench.table import Table
from mnas.space.nb201 import OPS, Nb201Space


def permuted_table(src: Table, seed: int, path: str | Path) -> Path:
    """The same values with the operations renamed by a random permutation per edge: the landscape
    keeps its statistics but the good operations are different ones."""
    rng = random.Random(seed)
    space = src.space
    perms = [rng.sample(range(c), c) for c in space.cardinalities]
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "permuted_accuracy", "permuted_latency_ms"])
        for i, arch in enumerate(src.archs):
            t = space.encode(space.parse(arch))
            new = tuple(p[x] for p, x in zip(perms, t))
            w.writerow([space.decode(new).canonical, f"{src.accuracy[i]:.6f}", f"{src.latency[i]:.6f}"])
    return path


def synthetic_table(path: str | Path, seed: int = 0, missing: float = 0.0) -> Path:
    """A made-up NB201-format table with a structure unlike NAS-Bench-201's: accuracy from per-edge
    op effects plus pairwise interactions between edges (epistasis), latency a per-op cost with
    edge-dependent weights and multiplicative noise, mildly correlated with accuracy; ``missing``
    drops that fraction of rows (a table covering part of the space)."""
    rng = np.random.default_rng(seed)
    space = Nb201Space()
    n_e, n_o = len(space.decisions), len(OPS)
    main = rng.normal(0, 1, (n_e, n_o))
    pair = rng.normal(0, 0.5, (n_e, n_e, n_o, n_o))
    op_cost = rng.gamma(2.0, 1.0, n_o)
    edge_w = rng.uniform(0.5, 2.0, n_e)
    tok = np.array(np.unravel_index(np.arange(space.size), space.cardinalities)).T  # [N, 6]
    edges = np.arange(n_e)
    score = main[edges, tok].sum(1)
    for a in range(n_e):
        for b in range(a + 1, n_e):
            score += pair[a, b, tok[:, a], tok[:, b]]
    lat = (0.5 + (edge_w * op_cost[tok]).sum(1)) * np.exp(rng.normal(0, 0.15, len(tok)))
    score += 0.3 * np.log(lat) + rng.normal(0, 0.3, len(tok))
    acc = 0.5 + 0.45 / (1 + np.exp(-score / 2.5))
    keep = rng.random(len(tok)) >= missing
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "synthetic_accuracy", "device_latency_ms"])
        for i in np.flatnonzero(keep):
            w.writerow([space.decode(tuple(int(x) for x in tok[i])).canonical, f"{acc[i]:.6f}", f"{lat[i]:.4f}"])
    return path
