"""Pruning against none at equal budget, on a cheap proxy (issue 31 point 3): trainings and seconds saved,
the best reward found, and how well the first rung ranks the full proxy (Kendall tau).

    nice -n 15 python benchmarks/pruning.py train --seed 0 --out runs/pruning/seed0.json
    nice -n 15 python benchmarks/pruning.py train --seed 1 --out runs/pruning/seed1.json
    nice -n 15 python benchmarks/pruning.py latency --out runs/pruning/latency.json
    python benchmarks/pruning.py analyse runs/pruning/seed0.json runs/pruning/seed1.json \
        --latency runs/pruning/latency.json

``train`` trains the same ``--archs`` random architectures of the space (always drawn with seed 0) with one
training seed, to the end, evaluating every ``--every`` epochs (the trainer's ``Watch``, never stopping),
and keeps each curve with the seconds at which each point was reached (resumable: the JSON is rewritten
after every architecture). ``analyse`` replays the search loop's decision on those curves, in order: each
trial is judged by ``mnas.run.pruning.Decider`` against the curves finished before it, exactly as a search
with one worker judges it (training is deterministic for a seed, so the prefix of a full curve is what the
pruned training would have seen). A pruned trial costs the seconds to the step where it was stopped.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

PROXY = {"dataset": "digits", "resolution": 16, "width_multiplier": 0.25, "epochs": 3, "batch_size": 64}
PRUNERS = {
    "none": {"name": "none"},
    "median": {"name": "median", "startup_trials": 3},
    "median-warm2": {"name": "median", "startup_trials": 3, "warmup_steps": 2},
    "asha": {"name": "asha", "min_resource": 1, "reduction_factor": 3},
    "asha-min2": {"name": "asha", "min_resource": 2, "reduction_factor": 3},
}


def archs(n: int):
    from mnas.space import load_space

    space, rng = load_space("mnasnet"), random.Random(0)
    return [space.decode([rng.randrange(len(d)) for d in space.decisions]) for _ in range(n)]


def train(args) -> None:
    from mnas.train import TrainTask, train_architecture
    from mnas.train.trainer import Watch

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.exists() else {"proxy": PROXY, "every": args.every, "seed": args.seed,
                                                                "trials": []}
    task = TrainTask(**PROXY)
    for i, arch in enumerate(archs(args.archs)):
        if i < len(done["trials"]):
            continue
        t0, points = time.perf_counter(), []

        def report(step: int, top1: float) -> bool:
            points.append([step, top1, time.perf_counter() - t0])
            return False

        r = train_architecture(arch, task, args.seed, Watch(args.every, report))
        final_step = r.intermediate[-1][0]
        points.append([final_step, r.top1, time.perf_counter() - t0])
        done["trials"].append({"arch": arch.canonical, "status": r.status, "top1": r.top1, "curve": points,
                               "seconds": time.perf_counter() - t0})
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1))
        tmp.replace(out)
        print(f"seed {args.seed} arch {i}: top1 {r.top1:.3f} in {points[-1][2]:.0f} s", flush=True)


def latency(args) -> None:
    from mnas.api import measure

    out = {a.canonical: measure(a, "onnxruntime", resolution=32, runs=20, warmup=3).median_ms
           for a in archs(args.archs)}
    Path(args.out).write_text(json.dumps(out, indent=1))


def replay(trials: list[dict], pruner: dict, lat: dict[str, float], reward_cfg) -> list[dict]:
    """Each trial's fate under ``pruner``: stopped at which step (None: trained to the end) and its cost."""
    from mnas.run.pruning import Decider, PrunerConfig, TrialCurve
    from mnas.search.reward import reward

    cfg, history, out = PrunerConfig(**pruner), [], []
    for t in trials:
        decider = Decider(cfg, history)
        stopped = None
        for step, top1, _ in t["curve"][:-1]:  # the last point is the final evaluation: never judged
            decider.report(step, top1)
            if decider.should_prune():
                stopped = step
                break
        point = next(p for p in t["curve"] if p[0] == stopped) if stopped is not None else t["curve"][-1]
        fate = {"arch": t["arch"], "pruned": stopped is not None, "seconds": point[2], "accuracy": point[1],
                "epochs": point[0] / t["curve"][-1][0],  # the fraction of the full training it cost
                "reward": None if stopped is not None else reward(t["top1"], lat[t["arch"]], reward_cfg)}
        steps = {p[0]: p[1] for p in (t["curve"] if stopped is None else t["curve"][:t["curve"].index(point) + 1])}
        history.append(TrialCurve("pruned" if stopped is not None else "completed", steps, decider.rungs,
                                  None if stopped is not None else t["top1"]))
        out.append(fate)
    return out


def best_within(fates: list[dict], seconds: float) -> float | None:
    spent, best = 0.0, None
    for f in fates:
        spent += f["seconds"]
        if spent > seconds:
            break
        if f["reward"] is not None and (best is None or f["reward"] > best):
            best = f["reward"]
    return best


def analyse(args) -> None:
    from mnas.report.retrained import kendall_tau
    from mnas.search.reward import RewardConfig

    lat = json.loads(Path(args.latency).read_text())
    target = sorted(lat.values())[len(lat) // 2]  # T: the median architecture's latency
    reward_cfg = RewardConfig.from_preset("soft", target)
    print(f"T = {target:.3f} ms (median of the {len(lat)} architectures), soft reward\n")
    print("| seed | pruner | trained to the end | pruned | trainings (full equivalents) | seconds | seconds saved | "
          "best reward (all) | none's best within these seconds | best reward within half of none's seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.runs:
        run = json.loads(Path(path).read_text())
        trials = run["trials"]
        full = sum(t["seconds"] for t in trials)
        half = sum(t["seconds"] for t in trials[:len(trials) // 2])
        none = replay(trials, PRUNERS["none"], lat, reward_cfg)
        for name, pruner in PRUNERS.items():
            fates = replay(trials, pruner, lat, reward_cfg)
            spent = sum(f["seconds"] for f in fates)
            best = max((f["reward"] for f in fates if f["reward"] is not None), default=None)
            print(f"| {run['seed']} | {name} | {sum(not f['pruned'] for f in fates)} | "
                  f"{sum(f['pruned'] for f in fates)} | {sum(f['epochs'] for f in fates):.1f} | {spent:.0f} | {100 * (1 - spent / full):.0f} % | "
                  f"{best:.4f} | {_fmt(best_within(none, spent))} | {_fmt(best_within(fates, half))} |")
    print("\nKendall tau between the accuracy at a step and the full proxy's (all architectures):\n")
    print("| seed | " + " | ".join(f"step {s}" for s in _steps(args.runs)) + " |")
    print("|---|" + "---|" * len(_steps(args.runs)))
    for path in args.runs:
        run = json.loads(Path(path).read_text())
        finals = [t["top1"] for t in run["trials"]]
        taus = []
        for s in _steps(args.runs):
            at = [next(p[1] for p in t["curve"] if p[0] == s) for t in run["trials"]]
            taus.append(kendall_tau(at, finals)[0])
        print(f"| {run['seed']} | " + " | ".join(_fmt(t) for t in taus) + " |")


def _steps(paths) -> list[int]:
    run = json.loads(Path(paths[0]).read_text())
    return [p[0] for p in run["trials"][0]["curve"][:-1]]


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--archs", type=int, default=12)
    t.add_argument("--every", type=float, default=0.5)
    t.add_argument("--out", required=True)
    la = sub.add_parser("latency")
    la.add_argument("--archs", type=int, default=12)
    la.add_argument("--out", required=True)
    an = sub.add_parser("analyse")
    an.add_argument("runs", nargs="+")
    an.add_argument("--latency", required=True)
    args = ap.parse_args()
    {"train": train, "latency": latency, "analyse": analyse}[args.cmd](args)


if __name__ == "__main__":
    main()
