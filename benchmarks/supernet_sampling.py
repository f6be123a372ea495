"""The sandwich rule against progressive shrinking (issue 29, "choose by measurement"): supernets trained by
``supernet_fidelity.py --phase supernet`` with each ``--sampling`` and several seeds, over the same
architectures (the same ``--arch-seed``), compared side by side.

    python benchmarks/supernet_sampling.py runs/sampling/sandwich-s0 runs/sampling/sandwich-s1 \\
        runs/sampling/progressive-s0 runs/sampling/progressive-s1

Per folder: the sampling, the seed, the steps and sub-network passes (forward and backward of one
sub-network on one batch), the training's seconds, and the architectures' inherited top-1 (mean, the largest,
the smallest). Per sampling: Kendall tau between its seeds' rankings of the architectures (does the supernet
rank them the same when trained again?). A supernet folder's own standalone truth is not needed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from mnas import MnasError
from mnas.report.retrained import kendall_tau
from mnas.supernet.net import stage_of
from table_runs import script


def passes(sampling: str, steps: int, n_random: int) -> int:
    """Sub-network passes of a training: the sandwich rule's 2 + n_random a step; progressive shrinking's one
    (the largest) a step in its first stage, 2 + n_random after."""
    per = 2 + n_random
    if sampling != "progressive":
        return steps * per
    first = sum(1 for s in range(steps) if stage_of(s, steps) == 0)
    return first + (steps - first) * per


def load(folder: Path) -> dict:
    path = folder / "results-supernet.json"
    if not path.is_file():
        raise MnasError(f"{folder}: no results-supernet.json: run supernet_fidelity.py --out {folder} --phase supernet")
    r = json.loads(path.read_text())
    models = {k: v for k, v in r.get("models", {}).items() if "supernet_top1" in v}
    if not models:
        raise MnasError(f"{folder}: no architecture read from its supernet yet: run its supernet phase to the end")
    s = r["settings"]
    sampling = s.get("sampling", "sandwich")
    return {"folder": str(folder), "sampling": sampling, "seed": s["seed"], "arch_seed": s["arch_seed"],
            "steps": s["steps"], "passes": passes(sampling, s["steps"], s["random"]),
            "train_s": r.get("supernet_train_seconds"), "models": models}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="supernet_fidelity.py --out folders")
    args = ap.parse_args(argv)
    runs = [load(f) for f in args.folders]
    if len({r["arch_seed"] for r in runs}) > 1:
        raise MnasError("the folders read different architectures (--arch-seed differs): give them one --arch-seed")
    keys = sorted(set.intersection(*(set(r["models"]) for r in runs)), key=lambda k: runs[0]["models"][k]["index"])
    print(f"{len(keys)} architectures read from every supernet\n")
    print("| sampling | seed | steps | sub-network passes | train s | mean top-1 | largest | smallest |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        top = [r["models"][k]["supernet_top1"] for k in keys]
        by_index = {r["models"][k]["index"]: r["models"][k]["supernet_top1"] for k in keys}
        print(f"| {r['sampling']} | {r['seed']} | {r['steps']} | {r['passes']} | {r['train_s'] or 0:.0f} | "
              f"{statistics.mean(top):.4f} | {by_index.get(0, float('nan')):.4f} | {by_index.get(1, float('nan')):.4f} |")
    print("\n| pair | Kendall tau (p) |\n|---|---|")
    for a, b in itertools.combinations(runs, 2):
        tau, p, _ = kendall_tau([a["models"][k]["supernet_top1"] for k in keys],
                                [b["models"][k]["supernet_top1"] for k in keys])
        p_text = "" if p is None else f" ({p:.3f})"
        tau_text = "n/a (constant)" if tau is None else f"{tau:.3f}"
        print(f"| {a['sampling']} s{a['seed']} vs {b['sampling']} s{b['seed']} | {tau_text}{p_text} |")
    return 0


if __name__ == "__main__":
    script(main)
