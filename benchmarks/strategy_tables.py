"""The strategy benchmark of docs/strategies.md over several tables: the in-repo NAS-Bench-201 table (the same
file as the project's shared nb201/cifar10_pixel3.csv: its README gives the SHA-256), its ops permuted
(seed 11) and a synthetic table (seed 5, 10 % cells missing); the tables of other generator seeds no setting
was chosen on (permuted 23 and 37, synthetic 8 with 10 % missing and 13 complete); and ``--generated N``
tables generated from ``--generated-seed`` (``generated:FAMILY:SEED``, each family in turn: accuracy and
latency correlated positively, negatively, not at all, heavy-tailed and flat tops, missing cells, T at
different quantiles; mnas.search.bench.families). Writes one ``mnas bench strategies --json`` report per
table and prints reward regret as a fraction of random's and of evolution's, at equal trainings and at equal
total cost (trainings + latency queries at --latency-cost each), with the p-values.

    nice -n 10 python benchmarks/strategy_tables.py --out runs/strategy-bench [--seeds 30] [--jobs 2] \\
        [--tables main,unseen,generated or names] [--generated 6] [--generated-seed 2026] \\
        [--strategies random,evolution,...] [--latency-cost 0.001] [--latency-noise 0.03] [--extra-latency-costs 0.05] \\
        [--markdown FILE] [--resume]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mnas.search.bench import (Oracle, bench_strategies, generated_names, load_table, open_table, permuted_table,
                               synthetic_table)
from mnas.search.bench.runner import LATENCY_COST, LATENCY_NOISE

SHARED = Path(__file__).with_name("data") / "nb201_cifar10_pixel3.csv.gz"
STRATEGIES = ("random,evolution,evolution-latency,random-latency,screen-random,ppo,ppo-screened,predictor,"
              "optuna-tpe,optuna-nsga2")
GROUPS = ("main", "unseen", "generated")


def tables(out: Path, groups: set[str], generated: int, generated_seed: int) -> dict[str, str]:
    """Name -> what ``open_table`` opens, for the tables of ``groups``."""
    made: dict[str, str] = {}
    if groups & {"main", "unseen"}:
        src = load_table(SHARED)
    if "main" in groups:
        made.update({"shared": str(SHARED),
                     "permuted-11": str(permuted_table(src, 11, out / "permuted-11.csv")),
                     "synthetic-5": str(synthetic_table(out / "synthetic-5.csv", 5, missing=0.1))})
    if "unseen" in groups:
        made.update({"permuted-23": str(permuted_table(src, 23, out / "permuted-23.csv")),
                     "permuted-37": str(permuted_table(src, 37, out / "permuted-37.csv")),
                     "synthetic-8": str(synthetic_table(out / "synthetic-8.csv", 8, missing=0.1)),
                     "synthetic-13": str(synthetic_table(out / "synthetic-13.csv", 13))})
    if "generated" in groups:
        made.update({name: name for name in generated_names(generated_seed, generated)})
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--unseen", action="store_true", help="the tables of other generator seeds only "
                    "(--tables unseen)")
    ap.add_argument("--tables", default="main,unseen,generated",
                    help="groups (main, unseen, generated) and/or table names, comma-separated")
    ap.add_argument("--generated", type=int, default=6, help="how many generated tables (families in turn)")
    ap.add_argument("--generated-seed", type=int, default=2026, help="seed of the first generated table")
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budgets", default="100,200,500")
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--latency-cost", type=float, default=LATENCY_COST)
    ap.add_argument("--latency-noise", type=float, default=LATENCY_NOISE)
    ap.add_argument("--extra-latency-costs", default="", help="also report equal total cost at these query "
                    "prices (comma-separated; the same runs, counted differently)")
    ap.add_argument("--resume", action="store_true", help="keep the tables whose report is already in --out "
                    "(a killed run goes on from the table it was on)")
    ap.add_argument("--markdown", type=Path, help="also write each table's results as markdown tables")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    names, budgets = args.strategies.split(","), [int(b) for b in args.budgets.split(",")]
    wanted = {"unseen"} if args.unseen else set(args.tables.split(","))
    groups, singles = wanted & set(GROUPS), wanted - set(GROUPS)
    made = tables(args.out, groups | {_group(k) for k in singles}, args.generated, args.generated_seed)
    made = {k: v for k, v in made.items() if _group(k) in groups or k in singles}
    made.update({k: k for k in singles if k.startswith("generated:")})  # any generated table by its name
    if missing := singles - set(made):
        ap.error(f"no table {', '.join(sorted(missing))} (groups: {', '.join(GROUPS)})")
    t0 = time.perf_counter()
    md: list[str] = []
    extra = [float(c) for c in args.extra_latency_costs.split(",") if c]
    for name, spec in made.items():
        path = args.out / f"{name.replace(':', '-')}.json"
        if args.resume and path.exists():
            rep = json.loads(path.read_text())
        else:
            rep = bench_strategies(Oracle.build(open_table(spec)), names, budgets, args.seeds, jobs=args.jobs,
                                   latency_cost=args.latency_cost, latency_noise=args.latency_noise,
                                   extra_latency_costs=extra)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(rep, indent=1))
            tmp.replace(path)  # a kill leaves no half-written report for --resume to keep
        md += markdown(name, rep)
        if args.markdown:
            args.markdown.write_text("\n".join(md) + "\n")
        for key, what in (("budgets", "trainings"), ("cost_budgets", "total cost")):
            for b, block in rep[key].items():
                rnd = block.get("random", {}).get("reward_regret", {}).get("mean")
                evo = block.get("evolution", {}).get("reward_regret", {}).get("mean")
                for s, e in block.items():
                    rr = e["reward_regret"]
                    print(f"{name:26s} {what:10s} {b:>4s} {s:17s} evals {e['evaluations_mean']:5.0f} "
                          f"queries {e['latency_queries_mean']:6.0f}  RR {rr['mean']:.4f}"
                          + (f" = {rr['mean'] / rnd:.2f}x random (p {_p(rr.get('p_vs_random'))})" if rnd else "")
                          + (f" = {rr['mean'] / evo:.2f}x evolution (p {_p(rr.get('p_vs_evolution'))})"
                             if evo and s != "evolution" else "")
                          + f"  HV {e['hv_ratio']['mean']:.3f}  CR {e['constrained_regret']['mean']:.4f}", flush=True)
        print(f"{name}: {rep['wall_s']:.0f} s wall, CPU s per strategy "
              + ", ".join(f"{s} {v:.0f}" for s, v in rep["cpu_s"].items()), flush=True)
    print(f"all tables: {time.perf_counter() - t0:.0f} s wall")


def _group(name: str) -> str:
    if name.startswith("generated:"):
        return "generated"
    return "main" if name in ("shared", "permuted-11", "synthetic-5") else "unseen"


def _p(x: float | None) -> str:
    return "" if x is None else f"{x:.1g}"


def markdown(name: str, rep: dict) -> list[str]:
    """One table's report as markdown: RR as a fraction of random's and evolution's, at equal trainings and at
    equal total cost."""
    src = rep["table"]["source"]
    made = ", ".join(f"{k} {v}" for k, v in src.items() if k not in ("name", "path"))
    lines = [f"**{name}**{' (' + made + ')' if made else ''}: T = {rep['reward']['target_ms']:.4g} ms "
             f"({rep['reward']['target_quantile']:g} quantile); {rep['wall_s']:.0f} s wall on {rep['jobs']} "
             f"process(es), {sum(rep['cpu_s'].values()):.0f} CPU s", ""]
    at = [(rep["cost_budgets_at"][c], f"total cost, query = {c}") for c in rep.get("cost_budgets_at", {})]
    for block_set, what in ((rep["budgets"], "trainings"), (rep["cost_budgets"], "total cost"), *at):
        lines += [f"| {what} | strategy | evals | latency queries | RR | RR / random (p) | RR / evolution (p) "
                  "| HV | CR |", "|---|---|---|---|---|---|---|---|---|"]
        for b, block in block_set.items():
            rnd = block.get("random", {}).get("reward_regret", {}).get("mean")
            evo = block.get("evolution", {}).get("reward_regret", {}).get("mean")
            for s, e in block.items():
                rr, hv = e["reward_regret"], e["hv_ratio"]
                vs_r = f"{rr['mean'] / rnd:.2f} ({_p(rr.get('p_vs_random'))})" if rnd and s != "random" else ""
                vs_e = f"{rr['mean'] / evo:.2f} ({_p(rr.get('p_vs_evolution'))})" \
                    if evo and s not in ("random", "evolution") else ""
                hv_p = f" ({_p(hv.get('p_vs_random'))})" if s != "random" else ""
                lines.append(f"| {b} | {s} | {e['evaluations_mean']:.0f} | {e['latency_queries_mean']:.0f} | "
                             f"{rr['mean']:.4f} ± {rr['std']:.4f} | {vs_r} | {vs_e} | {hv['mean']:.3f}{hv_p} | "
                             f"{e['constrained_regret']['mean']:.4f} |")
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
