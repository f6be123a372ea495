"""The strategy benchmark of docs/strategies.md over several tables: the in-repo NAS-Bench-201 table, its ops
permuted (seed 11) and a synthetic table (seed 5, 10 % cells missing), plus with --unseen tables of other
generator seeds (permuted 23 and 37, synthetic 8 with 10 % missing and 13 complete) that no setting was
chosen on. Writes one ``mnas bench strategies --json`` report per table and prints reward regret as a
fraction of random's and of evolution's, with the p-values.

    nice -n 10 python benchmarks/strategy_tables.py --out runs/strategy-bench [--unseen] [--seeds 30] \\
        [--strategies random,evolution,ppo,predictor,optuna-tpe,optuna-nsga2] [--jobs 2] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mnas.search.bench import Oracle, bench_strategies, load_table, permuted_table, synthetic_table

SHARED = Path(__file__).with_name("data") / "nb201_cifar10_pixel3.csv.gz"
STRATEGIES = "random,evolution,ppo,predictor,optuna-tpe,optuna-nsga2"


def tables(out: Path, unseen: bool) -> dict[str, Path]:
    src = load_table(SHARED)
    if not unseen:
        return {"shared": SHARED, "permuted-11": permuted_table(src, 11, out / "permuted-11.csv"),
                "synthetic-5": synthetic_table(out / "synthetic-5.csv", 5, missing=0.1)}
    return {"permuted-23": permuted_table(src, 23, out / "permuted-23.csv"),
            "permuted-37": permuted_table(src, 37, out / "permuted-37.csv"),
            "synthetic-8": synthetic_table(out / "synthetic-8.csv", 8, missing=0.1),
            "synthetic-13": synthetic_table(out / "synthetic-13.csv", 13)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--unseen", action="store_true", help="the tables of other generator seeds only")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budgets", default="100,200,500")
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--markdown", type=Path, help="also write each table's results as the markdown tables of "
                    "docs/strategies.md")
    ap.add_argument("--tables", help="only these of the tables (comma-separated names)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names, budgets = args.strategies.split(","), [int(b) for b in args.budgets.split(",")]
    made = tables(args.out, args.unseen)
    if args.tables:
        made = {k: v for k, v in made.items() if k in args.tables.split(",")}
    t0 = time.perf_counter()
    md: list[str] = []
    for name, path in made.items():
        rep = bench_strategies(Oracle.build(load_table(path)), names, budgets, args.seeds, jobs=args.jobs)
        (args.out / f"{name}.json").write_text(json.dumps(rep, indent=1))
        md += markdown(name, rep)
        if args.markdown:
            args.markdown.write_text("\n".join(md) + "\n")
        for b, block in rep["budgets"].items():
            rnd = block.get("random", {}).get("reward_regret", {}).get("mean")
            evo = block.get("evolution", {}).get("reward_regret", {}).get("mean")
            for s, e in block.items():
                rr = e["reward_regret"]
                print(f"{name:13s} {b:>4s} {s:13s} evals {e['evaluations_mean']:5.0f} "
                      f"latency queries {e['latency_queries_mean']:6.0f}  RR {rr['mean']:.4f}"
                      + (f" = {rr['mean'] / rnd:.2f}x random (p {rr.get('p_vs_random', 1):.1g})" if rnd else "")
                      + (f" = {rr['mean'] / evo:.2f}x evolution (p {rr.get('p_vs_evolution', 1):.1g})"
                         if evo and s != "evolution" else "")
                      + f"  HV {e['hv_ratio']['mean']:.3f}  CR {e['constrained_regret']['mean']:.4f}", flush=True)
        print(f"{name}: {rep['wall_s']:.0f} s wall", flush=True)
    print(f"all tables: {time.perf_counter() - t0:.0f} s wall")


def _p(x: float | None) -> str:
    return "" if x is None else f"{x:.1g}"


def markdown(name: str, rep: dict) -> list[str]:
    """One table's report as the rows of docs/strategies.md: RR as a fraction of random's and evolution's."""
    lines = [f"**{name}**: {rep['wall_s']:.0f} s wall on {rep['jobs']} process(es), {sum(rep['cpu_s'].values()):.0f} CPU s", "",
             "| budget | strategy | evals | latency queries | RR | RR / random (p) | RR / evolution (p) | HV | CR |",
             "|---|---|---|---|---|---|---|---|---|"]
    for b, block in rep["budgets"].items():
        rnd = block.get("random", {}).get("reward_regret", {}).get("mean")
        evo = block.get("evolution", {}).get("reward_regret", {}).get("mean")
        for s, e in block.items():
            rr, hv = e["reward_regret"], e["hv_ratio"]
            vs_r = f"{rr['mean'] / rnd:.2f} ({_p(rr.get('p_vs_random'))})" if rnd and s != "random" else ""
            vs_e = f"{rr['mean'] / evo:.2f} ({_p(rr.get('p_vs_evolution'))})" if evo and s not in ("random", "evolution") \
                else ""
            hv_p = f" ({_p(hv.get('p_vs_random'))})" if s != "random" else ""
            lines.append(f"| {b} | {s} | {e['evaluations_mean']:.0f} | {e['latency_queries_mean']:.0f} | "
                         f"{rr['mean']:.4f} ± {rr['std']:.4f} | {vs_r} | {vs_e} | {hv['mean']:.3f}{hv_p} | "
                         f"{e['constrained_regret']['mean']:.4f} |")
    return lines + [""]


if __name__ == "__main__":
    main()
