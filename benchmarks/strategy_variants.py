"""One strategy with given options against random search and regularized evolution, over the tables of
benchmarks/strategy_tables.py (make them first with that script's --out DIR and --out DIR --unseen). Prints
reward regret as a fraction of random's (R) and of evolution's (E, with the one-sided Mann-Whitney p-value),
and the latency queries at the largest budget. The baselines' per-seed regrets are cached in --cache.

    python benchmarks/strategy_variants.py predictor '{"explore": 3}' --seeds 30 --tables shared,permuted-11 \\
        [--budgets 100,200,500] [--tables-dir runs/strategy-bench] [--unseen-dir runs/strategy-bench-unseen]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from mnas.search.bench import Oracle, load_table
from mnas.search.bench.runner import _run_all

SHARED = Path(__file__).with_name("data") / "nb201_cifar10_pixel3.csv.gz"
UNSEEN = ("permuted-23", "permuted-37", "synthetic-8", "synthetic-13")


def regrets(oracle: Oracle, strategy: str, options: dict, seeds: int, budgets: list[int], jobs: int
            ) -> tuple[dict[int, list[float]], float]:
    """Per budget, the reward regret of seeds 0..seeds-1 in order; the mean latency queries at the end."""
    done = sorted(_run_all(oracle, [(strategy, s, max(budgets), options, 10, True) for s in range(seeds)],
                           jobs, None), key=lambda r: r[1])
    out = {b: [oracle.metrics(r["rows"][:b])["reward_regret"] for _, _, r, _ in done] for b in budgets}
    return out, float(np.mean([r["latency_queries"][-1] for _, _, r, _ in done]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("strategy")
    ap.add_argument("options", nargs="?", default="{}", help="the strategy's options as JSON")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budgets", default="100,200,500")
    ap.add_argument("--tables", default="shared,permuted-11,synthetic-5")
    ap.add_argument("--tables-dir", type=Path, default=Path("runs/strategy-bench"))
    ap.add_argument("--unseen-dir", type=Path, default=Path("runs/strategy-bench-unseen"))
    ap.add_argument("--cache", type=Path, default=Path("runs/strategy-variants"))
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    options, budgets = json.loads(args.options), [int(b) for b in args.budgets.split(",")]
    args.cache.mkdir(parents=True, exist_ok=True)
    for name in args.tables.split(","):
        path = SHARED if name == "shared" else (args.unseen_dir if name in UNSEEN else args.tables_dir) / f"{name}.csv"
        oracle = Oracle.build(load_table(path))
        base = {}
        for s in ("random", "evolution"):
            f = args.cache / f"{name}-{s}-{args.seeds}.json"
            if not f.exists():
                f.write_text(json.dumps(regrets(oracle, s, {}, args.seeds, budgets, args.jobs)[0]))
            base[s] = {int(b): v for b, v in json.loads(f.read_text()).items()}
        mine, queries = regrets(oracle, args.strategy, options, args.seeds, budgets, args.jobs)
        parts = []
        for b in budgets:
            m = float(np.mean(mine[b]))
            p = mannwhitneyu(mine[b], base["evolution"][b], alternative="less").pvalue
            parts.append(f"{b}: {m / np.mean(base['random'][b]):.2f}R {m / np.mean(base['evolution'][b]):.2f}E"
                         f" (p {p:.2g})")
        print(f"{name}: " + "  ".join(parts) + f"  latency queries {queries:.0f}", flush=True)


if __name__ == "__main__":
    main()
