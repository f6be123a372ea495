"""Search quality at equal wall time (issue 29): the best model a search finds with the supernet as its accuracy
source against the best found with standalone proxy trainings, both winners then trained standalone with the
same recipe and judged on the same held-out images.

    python benchmarks/supernet_search_quality.py --out runs/sq --supernet runs/sn-spread/supernet \\
        --dataset npz:runs/cifar10-22k.npz --holdout 2000 --search-seconds 600 --search-seeds 2
    python benchmarks/supernet_search_quality.py --out /tmp/sq-smoke --smoke     # a few minutes

Arms (``--arms``, ``ESTIMATOR:STRATEGY``): ``supernet:evolution`` (the supernet's reading), ``proxy:evolution``
(a proxy training per trial) and ``supernet:random`` (the control: random architectures read from the same
supernet). Budgets are the trials' own wall time (the sum of each trial's start-to-finish: training or reading
plus the latency timing; kills and restarts cost nothing): a supernet arm gets ``--search-seconds``; a proxy arm
gets the supernet's training time plus ``--search-seconds`` (one device: the supernet is paid for), and its best
after ``--search-seconds`` alone is read from the same run (many devices: the supernet is amortised). Every
winner (rank 1 by reward within its budget) is trained standalone ``--final-seeds`` times for
``--final-epochs`` and re-timed beside T; the summary gives each arm's final top-1, LAT/T and soft reward,
mean and spread over search seeds.

Resumable and shareable: every search resumes with its remaining budget, every final training is written to
OUT/final/ as it finishes, and several processes of the same command share the work (claim files, as
supernet_fidelity.py).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from supernet_fidelity import _claim  # noqa: E402  (the shared claim files)

from mnas.fileio import atomic_write  # noqa: E402

SOFT_W = -0.07  # the soft reward's exponent (MnasNet, alpha = beta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--supernet", type=Path, help="a trained supernet (mnas supernet train) of --space")
    ap.add_argument("--space", default="mnasnet-cifar-elastic")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--holdout", type=float, default=None)
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--proxy-epochs", type=float, default=0.5, help="a proxy arm's training per trial")
    ap.add_argument("--search-seconds", type=float, default=600.0)
    ap.add_argument("--search-seeds", type=int, default=2)
    ap.add_argument("--arms", default="supernet:evolution,proxy:evolution,supernet:random")
    ap.add_argument("--target", default="mobilenet-v2-cifar", help="T: a zoo model timed on the backend")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--final-epochs", type=float, default=3.0)
    ap.add_argument("--final-seeds", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="digits, a 40-step supernet, 30 s searches")
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.search_seconds, args.search_seeds, args.final_epochs, args.final_seeds = 30.0, 1, 0.3, 1
        args.proxy_epochs = 0.1
        if args.supernet is None:
            args.supernet = out / "supernet"
            _smoke_supernet(args)
    if args.supernet is None:
        raise SystemExit("give --supernet DIR (mnas supernet train)")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"}
    results_path = out / "settings.json"
    if results_path.exists() and json.loads(results_path.read_text()) != settings:
        raise SystemExit(f"{out} was made with other settings ({results_path}): use another --out")
    atomic_write(results_path, json.dumps(settings, indent=1) + "\n")

    from mnas.supernet.training import read_checkpoint

    supernet_s = sum(h["seconds"] for h in read_checkpoint(args.supernet)["history"])
    arms = [tuple(a.split(":")) for a in args.arms.split(",")]
    # 1. the searches
    for est, strategy in arms:
        for seed in range(args.search_seeds):
            name = f"{est}-{strategy}-s{seed}"
            budget = args.search_seconds + (supernet_s if est == "proxy" else 0.0)
            if _spent(out / name)[0] < budget and _claim(out, name, 0):
                _search(args, out / name, est, strategy, seed, budget)
            print(f"search {name}: {_spent(out / name)[0]:.0f} of {budget:.0f} s", flush=True)
    pending = [f"{e}-{st}-s{seed}" for e, st in arms for seed in range(args.search_seeds)
               if _spent(out / f"{e}-{st}-s{seed}")[0] < args.search_seconds + (supernet_s if e == "proxy" else 0)]
    if pending:
        print(f"searches still running in another process ({', '.join(pending)}): run again after it", flush=True)
        return
    # 2. the winners, trained standalone and re-timed
    winners = {}
    for est, strategy in arms:
        for seed in range(args.search_seeds):
            name = f"{est}-{strategy}-s{seed}"
            budgets = {"": args.search_seconds + (supernet_s if est == "proxy" else 0.0)}
            if est == "proxy":
                budgets["@search-seconds"] = args.search_seconds
            for tag, b in budgets.items():
                w = _winner(out / name, b)
                if w is not None:
                    winners[name + tag] = w
    final = out / "final"
    final.mkdir(exist_ok=True)
    for key, w in winners.items():
        for k in range(args.final_seeds):
            p = final / f"{_slug(w['arch'])}-s{k}.json"
            if not p.exists() and _claim(out, f"final-{_slug(w['arch'])}", k):
                atomic_write(p, json.dumps(_final(args, w["arch"], k)) + "\n")
    if not all((final / f"{_slug(w['arch'])}-s{k}.json").exists() for w in winners.values()
               for k in range(args.final_seeds)):
        print("final trainings still running in another process: run again after it", flush=True)
        return
    # 3. the summary
    rows = {}
    for key, w in winners.items():
        got = [json.loads((final / f"{_slug(w['arch'])}-s{k}.json").read_text()) for k in range(args.final_seeds)]
        top1 = statistics.mean(g["top1"] for g in got)
        ratio = got[0]["ratio"]  # the protocol's: the first training's re-timing (each training re-times it)
        rows[key] = {**w, "final_top1": top1, "final_top1_seeds": [g["top1"] for g in got], "final_ratio": ratio,
                     "final_ratio_timings": [g["ratio"] for g in got],
                     "final_reward": top1 * ratio ** SOFT_W}
    summary = {}
    for est, strategy in arms:
        tags = [""] + (["@search-seconds"] if est == "proxy" else [])
        for tag in tags:
            got = [rows[f"{est}-{strategy}-s{s}{tag}"] for s in range(args.search_seeds)
                   if f"{est}-{strategy}-s{s}{tag}" in rows]
            summary[f"{est}:{strategy}{tag}"] = {
                m: _spread([g[m] for g in got]) for m in ("final_top1", "final_ratio", "final_reward", "trials")}
    result = {"supernet_train_seconds": supernet_s, "winners": rows, "summary": summary}
    atomic_write(out / "results.json", json.dumps(result, indent=1) + "\n")
    _print_table(rows, summary)
    _plot(rows, out / "results.png")


def _print_table(rows: dict, summary: dict) -> None:
    """Each winner (search, seed) with its search-time and standalone figures, then each arm's mean."""
    print(f"{'search':34} {'trials':>6} {'search acc':>10} {'search LAT/T':>12} {'final top-1 (seeds)':>22} "
          f"{'LAT/T (timings)':>20} {'reward':>7}")
    for key, r in rows.items():
        top1 = f"{r['final_top1']:.3f} (" + "/".join(f"{x:.3f}" for x in r["final_top1_seeds"]) + ")"
        print(f"{key:34} {r['trials']:6d} {r['search_accuracy']:10.3f} {r['search_ratio'] or float('nan'):12.3f} "
              f"{top1:>22} {'/'.join(f'{x:.3f}' for x in r['final_ratio_timings']):>20} "
              f"{r['final_reward']:7.4f}")
    for k, v in summary.items():
        t, w = v["final_top1"], v["final_reward"]
        print(f"{k:34} top-1 {t['mean']:.3f} [{t['min']:.3f}, {t['max']:.3f}]  reward {w['mean']:.4f} "
              f"[{w['min']:.4f}, {w['max']:.4f}]  n={t['n']}", flush=True)


def _plot(rows: dict, path: Path) -> None:
    """Standalone top-1 against re-timed LAT/T, one marker per winner (a line spans its training seeds)."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    def arm(key: str) -> str:  # "proxy-evolution-s1@search-seconds" -> "proxy-evolution@search-seconds"
        return re.sub(r"-s\d+", "", key)

    for i, name in enumerate(sorted({arm(k) for k in rows})):
        got = [r for k, r in rows.items() if arm(k) == name]
        c = f"C{i}"
        for j, r in enumerate(got):
            ax.plot([r["final_ratio"]] * 2, [min(r["final_top1_seeds"]), max(r["final_top1_seeds"])], color=c, lw=1)
            ax.scatter([r["final_ratio"]], [r["final_top1"]], color=c, label=name if j == 0 else None, s=30)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.set_xlabel("LAT/T, re-timed beside T")
    ax.set_ylabel("standalone top-1 (mean of seeds; line: range)")
    ax.set_title("Search quality: each arm's winners trained standalone")
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.97, top=0.92, bottom=0.12)
    atomic_write(path, lambda f: fig.savefig(f, dpi=150, format="png"))
    plt.close(fig)


def _spread(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs) if xs else None, "min": min(xs, default=None), "max": max(xs, default=None),
            "n": len(xs)}


def _slug(arch: str) -> str:
    import hashlib

    return hashlib.sha256(arch.encode()).hexdigest()[:12]


def _trials(folder: Path) -> list:
    from mnas.store import Store

    if not (folder / "experiment.db").exists():
        return []
    with Store(folder, readonly=True) as store:
        return sorted((t for t in store.trials() if t.started and t.finished), key=lambda t: t.id)


def _spent(folder: Path) -> tuple[float, list]:
    """The search's cost so far: the sum of its trials' start-to-finish times, and the trials."""
    ts = _trials(folder)
    return sum(t.finished - t.started for t in ts), ts


def _winner(folder: Path, budget: float) -> dict | None:
    """Rank 1 by reward among the trials started within ``budget`` seconds of trial time (a search starts no
    trial after its budget, and finishes the one it started)."""
    spent, best, n = 0.0, None, 0
    for t in _spent(folder)[1]:
        if spent >= budget:
            break
        spent += t.finished - t.started
        n += 1
        if t.reward is not None and (best is None or t.reward > best.reward):
            best = t
    if best is None:
        return None
    return {"arch": best.arch, "trial": best.id, "search_accuracy": best.accuracy, "search_ratio": best.latency_ratio,
            "search_reward": best.reward, "trials": n}


def _config(args, est: str, strategy: str, seed: int, budget: float) -> dict:
    proxy = {"dataset": args.dataset, "resolution": args.resolution, "width_multiplier": args.width,
             "batch_size": args.batch_size, "epochs": args.proxy_epochs, "threads": 1}
    if args.holdout is not None:
        proxy["holdout"] = int(args.holdout) if args.holdout >= 1 else args.holdout
    if est == "supernet":
        proxy["estimator"] = f"supernet:{args.supernet}"
    return {"name": f"sq-{est}-{strategy}", "seed": seed, "trials": 100_000, "time_budget_s": budget,
            "space": args.space, "strategy": {"name": strategy},
            "reward": {"preset": "soft", "target_model": args.target},
            "latency": {"backend": args.backend, "resolution": args.resolution, "num_classes": 10, "threads": 1,
                        "retime_top": 0},
            "proxy": proxy, "references": False, "executor": {"kind": "local"}}


def _search(args, folder: Path, est: str, strategy: str, seed: int, budget: float) -> None:
    """Run (or resume) one search until its trials' time reaches ``budget``."""
    import mnas.api as api

    while (spent := _spent(folder)[0]) < budget:
        before = len(_trials(folder))
        api.search(_config(args, est, strategy, seed, budget - spent), folder,
                   resume=(folder / "experiment.db").exists())
        if len(_trials(folder)) == before:  # stopped for another reason than time (the loop's own rules)
            break


def _final(args, arch: str, k: int) -> dict:
    """One standalone training of ``arch`` (seed k) and its LAT/T re-timed beside T."""
    import torch

    from mnas.latency import LatencySettings, measure
    from mnas.space import Architecture, resolve_arch
    from mnas.train import TrainTask, train_architecture

    torch.set_num_threads(1)
    task = TrainTask(dataset=args.dataset, resolution=args.resolution, width_multiplier=args.width,
                     batch_size=args.batch_size, epochs=args.final_epochs, threads=1,
                     **({} if args.holdout is None else
                        {"holdout": int(args.holdout) if args.holdout >= 1 else args.holdout}))
    a = Architecture.parse(arch)
    t = train_architecture(a, task, 1000 * k)
    settings = LatencySettings(resolution=args.resolution, num_classes=10, threads=1)
    r = measure(a, args.backend, settings, reference=resolve_arch(args.target)[1])
    return {"arch": arch, "seed": k, "top1": t.top1, "seconds": t.seconds, "ratio": r.extra["relative"]["ratio"],
            "latency_ms": r.median_ms}


def _smoke_supernet(args) -> None:
    from mnas.space import load_space
    from mnas.supernet.training import CHECKPOINT, train_supernet
    from mnas.train import TrainTask

    if (args.supernet / CHECKPOINT).exists():
        return
    task = TrainTask(dataset=args.dataset, resolution=args.resolution, width_multiplier=args.width,
                     batch_size=args.batch_size, epochs=1, threads=1)
    train_supernet(load_space(args.space), task, args.supernet, 40, 20, kernel_transform=False)


if __name__ == "__main__":
    main()
