"""The verdict of docs/results/2026-12-06-strategy-matrix.md from the JSON reports of
``benchmarks/strategy_tables.py``: per strategy, mean reward regret over evolution's on every table at 200 and
500 trainings, at equal total cost (the report's price and each of ``cost_budgets_at``) and at equal trainings;
a strategy "qualifies" when it is no worse than evolution (by 1e-4) on every table at both budgets. Then
hypervolume ratio / constrained regret, and trainings / latency queries, at 500.

    python benchmarks/strategy_verdict.py runs/strategy-matrix
"""
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
reps = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
order = ["shared", "permuted-11", "synthetic-5", "permuted-23", "permuted-37", "synthetic-8", "synthetic-13"]
names = [n for n in order if n in reps] + sorted(n for n in reps if n not in order)
def blocks(rep, price):
    return rep["cost_budgets"] if price == "main" else rep["cost_budgets_at"][price]
for price, label in (("main", "equal total cost, query = 0.001"), ("0.05", "equal total cost, query = 0.05"),
                     ("trainings", "equal trainings")):
    print(f"\n### Mean reward regret / evolution's, {label}\n")
    strategies = list(next(iter(reps.values()))["budgets"]["200"])
    print("| strategy | " + " | ".join(f"{n} @200 | @500" for n in names) + " | qualifies |")
    print("|---" * (2 * len(names) + 2) + "|")
    for s in strategies:
        cells, ok = [], True
        for n in names:
            bl = reps[n]["budgets"] if price == "trainings" else blocks(reps[n], price)
            for b in ("200", "500"):
                e, evo = bl[b][s]["reward_regret"]["mean"], bl[b]["evolution"]["reward_regret"]["mean"]
                good = e <= evo + 1e-4
                ok &= good
                cells.append(("" if good else "**") + (f"{e / evo:.2f}" if evo > 0 else f"{e:.4f}") + ("" if good else "**"))
        print(f"| {s} | " + " | ".join(cells) + f" | {'yes' if ok else 'no'} |")

# HV ratio and constrained regret beside regret, at equal total cost (0.001), budget 500, for every strategy
print("\n### At equal total cost (query = 0.001), 500: hypervolume ratio / constrained regret, mean over 30 seeds\n")
strategies = list(next(iter(reps.values()))["budgets"]["500"])
print("| strategy | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for s in strategies:
    cells = []
    for n in names:
        e = reps[n]["cost_budgets"]["500"][s]
        cells.append(f"{e['hv_ratio']['mean']:.3f} / {e['constrained_regret']['mean']:.4f}")
    print(f"| {s} | " + " | ".join(cells) + " |")
print("\n### Latency queries and trainings within the cost (query = 0.001), 500, mean\n")
print("| strategy | " + " | ".join(names) + " |")
print("|---" * (len(names) + 1) + "|")
for s in strategies:
    print(f"| {s} | " + " | ".join(f"{reps[n]['cost_budgets']['500'][s]['evaluations_mean']:.0f} / {reps[n]['cost_budgets']['500'][s]['latency_queries_mean']:.0f}" for n in names) + " |")
