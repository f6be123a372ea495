"""A tabular benchmark of search strategies: a table answers accuracy and latency for every cell
of a space at once, so a search of hundreds of evaluations takes well under a second and can be
repeated over many seeds.

Semantics (docs/strategies.md has the reasoning):
* an *evaluation* is a distinct architecture, as in the real loop, which never retrains a
  duplicate: a repeated proposal is told its cached result again and costs nothing; to stop a
  strategy that only repeats itself, a run ends after ``max_ask_factor * budget`` proposals;
* an architecture missing from the table counts as an evaluation that failed (tell(None));
* strategies are told synchronously, one proposal at a time;
* every run goes to the largest budget; smaller budgets are measured on its prefix (a strategy does
  not know its budget, so the prefix is exactly the shorter run).

Metrics per run and budget (accuracy as a fraction; the table's percentages are divided by 100):
* reward_regret: best reward in the table minus best reward among the evaluated architectures;
* hv_ratio: hypervolume of the evaluated set over that of the table's Pareto front, objectives
  (latency, error) both minimised, reference point (largest latency, median error);
* constrained_regret: best accuracy with latency <= T in the table minus the best found (when
  nothing under T was found: minus the table's worst accuracy).
Per strategy: means, standard deviations, and a one-sided Mann-Whitney U p-value against random
(regrets: smaller than random; hv_ratio: larger than random).
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from mnas import MnasError
from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies.base import STRATEGIES, make_strategy
from mnas.space.decisions import SearchSpace
from mnas.space.nb201 import OPS, Nb201Space

# Strategy options the benchmark uses unless --set overrides them: settings for 200-500
# evaluations instead of the paper's 8000 (docs/strategies.md, "Benchmark settings").
def bench_options() -> dict[str, dict[str, Any]]:
    from mnas.search.strategies.ppo import SMALL_BUDGET  # torch only when the bench runs

    return {"ppo": dict(SMALL_BUDGET)}


@dataclass
class Table:
    space: SearchSpace
    archs: list[str]
    accuracy: np.ndarray  # fraction in [0, 1]
    latency: np.ndarray  # ms
    row_of: np.ndarray  # mixed-radix index of the tokens -> row, -1 where the table has no entry
    accuracy_column: str
    latency_column: str
    accuracy_scale: float  # what the table's column was divided by

    def index(self, tokens: Sequence[int]) -> int:
        i = 0
        for t, c in zip(tokens, self.space.cardinalities):
            i = i * c + int(t)
        return i

    def lookup(self, tokens: Sequence[int]) -> int | None:
        row = int(self.row_of[self.index(tokens)])
        return None if row < 0 else row

    def __len__(self) -> int:
        return len(self.archs)


def _pick(columns: list[str], given: str | None, suffix: str, what: str, path: Path) -> str:
    if given:
        if given not in columns:
            raise MnasError(f"table {path}: no column {given!r} (columns: {', '.join(columns)})")
        return given
    found = [c for c in columns if c.endswith(suffix)]
    if len(found) != 1:
        raise MnasError(f"table {path}: {len(found)} columns end in {suffix!r}; name the {what} column "
                        f"with --{what} (columns: {', '.join(columns)})")
    return found[0]


def load_table(path: str | Path, accuracy: str | None = None, latency: str | None = None,
               space: SearchSpace | None = None) -> Table:
    """A CSV with an ``arch`` column (NAS-Bench-201 cell strings) plus accuracy and latency columns.
    Accuracy above 1 anywhere is read as a percentage."""
    path = Path(path)
    space = space or Nb201Space()
    if not path.is_file():
        raise MnasError(f"table {path} does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        if "arch" not in columns:
            raise MnasError(f"table {path}: no 'arch' column (columns: {', '.join(columns)})")
        acc_col = _pick(columns, accuracy, "_accuracy", "accuracy", path)
        lat_col = _pick(columns, latency, "_latency_ms", "latency", path)
        archs, accs, lats, tokens = [], [], [], []
        for n, row in enumerate(reader, 2):
            try:
                a, l = float(row[acc_col]), float(row[lat_col])
            except (TypeError, ValueError):
                raise MnasError(f"table {path}, line {n}: {acc_col}/{lat_col} must be numbers") from None
            if not (math.isfinite(a) and math.isfinite(l) and l > 0):
                raise MnasError(f"table {path}, line {n}: need a finite accuracy and a latency > 0")
            t = space.encode(space.parse(row["arch"]))
            archs.append(space.decode(t).canonical)
            accs.append(a)
            lats.append(l)
            tokens.append(t)
    if not archs:
        raise MnasError(f"table {path} has no rows")
    acc = np.array(accs)
    scale = 100.0 if acc.max() > 1.0 else 1.0
    table = Table(space, archs, acc / scale, np.array(lats), np.full(space.size, -1, dtype=np.int64),
                  acc_col, lat_col, scale)
    for r, t in enumerate(tokens):
        i = table.index(t)
        if table.row_of[i] >= 0:
            raise MnasError(f"table {path}: architecture {archs[r]} appears twice")
        table.row_of[i] = r
    return table


# metrics -------------------------------------------------------------------------------------

def pareto_mask(cost_a: np.ndarray, cost_b: np.ndarray) -> np.ndarray:
    """Rows not dominated when both costs are minimised."""
    order = np.lexsort((cost_b, cost_a))
    mask = np.zeros(len(cost_a), dtype=bool)
    best_b = math.inf
    for i in order:
        if cost_b[i] < best_b:
            mask[i] = True
            best_b = cost_b[i]
    return mask


def hypervolume_2d(cost_a: Sequence[float], cost_b: Sequence[float], ref: tuple[float, float]) -> float:
    """Area dominated by the points (both costs minimised) and bounded by ``ref``."""
    a, b = np.asarray(cost_a, float), np.asarray(cost_b, float)
    keep = (a < ref[0]) & (b < ref[1])
    a, b = a[keep], b[keep]
    if not len(a):
        return 0.0
    order = np.lexsort((b, a))
    area, best_b = 0.0, ref[1]
    for i in order:  # sweep along cost_a; each point adds the strip below the best cost_b so far
        if b[i] < best_b:
            area += (ref[0] - a[i]) * (best_b - b[i])
            best_b = b[i]
    return float(area)


@dataclass
class Oracle:
    """Everything a run's metrics are measured against."""

    table: Table
    cfg: RewardConfig
    rewards: np.ndarray
    best_reward: float
    ref: tuple[float, float]
    true_hv: float
    target_ms: float
    best_constrained: float

    @classmethod
    def build(cls, table: Table, preset: str = "soft", target_quantile: float = 0.25) -> Oracle:
        if not 0 < target_quantile <= 1:
            raise MnasError(f"--target-quantile must lie in (0, 1], got {target_quantile}")
        target = float(np.quantile(table.latency, target_quantile))
        cfg = RewardConfig.from_preset(preset, target_ms=target)
        rewards = np.array([reward(a, l, cfg) for a, l in zip(table.accuracy, table.latency)])
        err = 1.0 - table.accuracy
        ref = (float(table.latency.max()), float(np.median(err)))
        feasible = table.latency <= target
        return cls(table, cfg, rewards, float(rewards.max()), ref, hypervolume_2d(table.latency, err, ref),
                   target, float(table.accuracy[feasible].max()))

    def metrics(self, rows: Sequence[int]) -> dict[str, float]:
        rows = np.asarray([r for r in rows if r >= 0], dtype=np.int64)
        if not len(rows):
            return {"reward_regret": self.best_reward - float(self.rewards.min()), "hv_ratio": 0.0,
                    "constrained_regret": self.best_constrained - float(self.table.accuracy.min())}
        lat, acc = self.table.latency[rows], self.table.accuracy[rows]
        feasible = acc[lat <= self.target_ms]
        found = float(feasible.max()) if len(feasible) else float(self.table.accuracy.min())
        hv = hypervolume_2d(lat, 1.0 - acc, self.ref)
        return {"reward_regret": self.best_reward - float(self.rewards[rows].max()),
                "hv_ratio": hv / self.true_hv if self.true_hv > 0 else 0.0,
                "constrained_regret": self.best_constrained - found}


# one search ----------------------------------------------------------------------------------

def run_search(oracle: Oracle, strategy: str, seed: int, budget: int, options: dict | None = None,
               max_ask_factor: int = 10) -> dict[str, Any]:
    """Rows evaluated (in order; -1 = not in the table, a failed evaluation) and the number of asks."""
    table = oracle.table
    strat = make_strategy(strategy, table.space, seed=seed, **(options or {}))
    seen: dict[tuple[int, ...], int] = {}
    rows: list[int] = []
    asks = 0
    max_asks = max_ask_factor * budget
    while len(rows) < budget and asks < max_asks:
        tokens = strat.ask()
        asks += 1
        if tokens in seen:
            row = seen[tokens]
        else:
            found = table.lookup(tokens)
            row = -1 if found is None else found
            seen[tokens] = row
            rows.append(row)
        if row < 0:
            strat.tell(tokens, None)
        else:
            acc, lat = float(table.accuracy[row]), float(table.latency[row])
            strat.tell(tokens, float(oracle.rewards[row]), {"accuracy": acc, "latency_ms": lat})
    return {"rows": rows, "asks": asks}


_ORACLE: Oracle | None = None


def _init_worker(oracle: Oracle) -> None:
    global _ORACLE
    _ORACLE = oracle
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _job(args: tuple[str, int, int, dict, int]) -> tuple[str, int, dict, float]:
    strategy, seed, budget, options, factor = args
    t0 = time.perf_counter()
    out = run_search(_ORACLE, strategy, seed, budget, options, factor)  # type: ignore[arg-type]
    return strategy, seed, out, time.perf_counter() - t0


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "median": float(np.median(arr))}


def _pvalue(x: list[float], y: list[float], alternative: str) -> float | None:
    from scipy.stats import mannwhitneyu

    if len(x) < 2 or len(y) < 2:
        return None
    if np.allclose(x, x[0]) and np.allclose(y, y[0]) and np.isclose(x[0], y[0]):
        return 1.0
    return float(mannwhitneyu(x, y, alternative=alternative).pvalue)


def bench_strategies(oracle: Oracle, strategies: Sequence[str], budgets: Sequence[int], seeds: int,
                     options: dict[str, dict] | None = None, jobs: int | None = None,
                     max_ask_factor: int = 10, progress: Callable[[int, int], None] | None = None
                     ) -> dict[str, Any]:
    """Run every strategy over ``seeds`` seeds to max(budgets); summarise each budget's prefix."""
    for s in strategies:
        if s not in STRATEGIES:
            raise MnasError(f"unknown strategy {s!r}: expected one of {', '.join(STRATEGIES)}")
    if not budgets or min(budgets) < 1 or seeds < 1:
        raise MnasError("need budgets >= 1 and seeds >= 1")
    opts = bench_options() if any(s == "ppo" for s in strategies) else {}
    for name, extra in (options or {}).items():
        opts.setdefault(name, {}).update(extra)
    top = max(budgets)
    work = [(s, seed, top, opts.get(s, {}), max_ask_factor) for s in strategies for seed in range(seeds)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    results: dict[str, dict[int, dict]] = {s: {} for s in strategies}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    t0 = time.perf_counter()
    if jobs == 1:
        _init_worker(oracle)
        for i, w in enumerate(work, 1):
            s, seed, out, dt = _job(w)
            results[s][seed], seconds[s] = out, seconds[s] + dt
            if progress:
                progress(i, len(work))
    else:
        with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_init_worker,
                                 initargs=(oracle,)) as pool:
            futures = [pool.submit(_job, w) for w in work]
            for i, fut in enumerate(as_completed(futures), 1):
                s, seed, out, dt = fut.result()
                results[s][seed], seconds[s] = out, seconds[s] + dt
                if progress:
                    progress(i, len(work))
    wall = time.perf_counter() - t0
    table = oracle.table
    report: dict[str, Any] = {
        "table": {"rows": len(table), "space_size": table.space.size, "accuracy": table.accuracy_column,
                  "latency": table.latency_column, "accuracy_scale": table.accuracy_scale},
        "reward": {"preset": oracle.cfg.preset, "alpha": oracle.cfg.alpha, "beta": oracle.cfg.beta,
                   "target_ms": oracle.target_ms, "best_reward": oracle.best_reward},
        "reference_point": {"latency_ms": oracle.ref[0], "error": oracle.ref[1]},
        "true_hypervolume": oracle.true_hv, "best_accuracy_under_target": oracle.best_constrained,
        "seeds": seeds, "max_ask_factor": max_ask_factor, "options": opts, "wall_s": wall, "jobs": jobs,
        "cpu_s": seconds, "budgets": {}}
    metric_names = ("reward_regret", "hv_ratio", "constrained_regret")
    for b in sorted(set(budgets)):
        per: dict[str, dict[str, list[float]]] = {}
        evals: dict[str, list[int]] = {}
        for s in strategies:
            per[s] = {m: [] for m in metric_names}
            evals[s] = []
            for seed in range(seeds):
                rows = results[s][seed]["rows"][:b]
                evals[s].append(len(rows))
                for m, v in oracle.metrics(rows).items():
                    per[s][m].append(v)
        block: dict[str, Any] = {}
        for s in strategies:
            entry: dict[str, Any] = {"evaluations_mean": float(np.mean(evals[s]))}
            for m in metric_names:
                entry[m] = _summary(per[s][m])
                if "random" in per and s != "random":
                    alt = "greater" if m == "hv_ratio" else "less"
                    entry[m]["p_vs_random"] = _pvalue(per[s][m], per["random"][m], alt)
            block[s] = entry
        report["budgets"][str(b)] = block
    return report


# tables for checking a strategy on structure it was not tuned on ----------------------------

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
