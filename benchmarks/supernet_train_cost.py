"""What a supernet costs in standalone trainings, re-timed on a quiet machine (issue 29).

    python benchmarks/supernet_train_cost.py runs/sn-spread [--steps 100] [--epochs 0.2]

Reads a ``supernet_fidelity.py`` folder's settings and architectures. Times ``--steps`` sandwich steps of a
fresh supernet with the run's settings (one torch thread) and a ``--epochs`` training of each architecture
with the run's recipe, then scales both to the run's lengths (its ``steps``; its ``epochs``: the training
part scaled, building and the final evaluation counted once) and prints the supernet's cost in standalone
trainings beside the figure the run recorded. Run it on a quiet machine (``uptime``); nothing is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mnas.space import Architecture, load_space
from mnas.supernet.training import train_supernet
from mnas.train import TrainTask, train_architecture


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a supernet_fidelity.py output folder (its results.json)")
    ap.add_argument("--steps", type=int, default=100, help="sandwich steps timed")
    ap.add_argument("--epochs", type=float, default=0.2, help="each architecture's timed training")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = json.loads((args.run / "results.json").read_text())
    s, models = results["settings"], results["models"]
    archs = [Architecture.parse(a) for a in sorted(models, key=lambda a: models[a]["index"])]
    base = dict(recipe=s.get("recipe", "fast"), dataset=s["dataset"], resolution=s["resolution"], width_multiplier=s["width"],
                batch_size=s["batch_size"], train_limit=s["train_limit"], seed=s["seed"],
                **({} if s["holdout"] is None else
                   {"holdout": int(s["holdout"]) if s["holdout"] >= 1 else s["holdout"]}),
                **({} if s["lr"] is None else {"lr": s["lr"]}))
    print(f"load {os.getloadavg()[0]:.2f} at the start", flush=True)

    with tempfile.TemporaryDirectory(prefix="sn-cost-") as tmp:
        t0 = time.perf_counter()
        r = train_supernet(load_space(s["space"]), TrainTask(**base, epochs=s["epochs"]), Path(tmp) / "sn",
                           args.steps, args.steps, n_random=s["random"], ends=s["ends"],
                           share_skip=s["share_skip"], kernel_transform=s["kernel_transform"],
                           sampling=s.get("sampling", "sandwich"))
        if r.status != "ok":
            raise SystemExit(f"supernet training failed: {r.error}")
        step_s = sum(h["seconds"] for h in r.history) / args.steps
        print(f"supernet: {args.steps} steps in {time.perf_counter() - t0:.0f} s, {step_s:.3f} s a step "
              f"(the run's history: {results['supernet_train_seconds'] / s['steps']:.3f})", flush=True)

    scale = s["epochs"] / args.epochs
    full = []
    for i, a in enumerate(archs):
        t = train_architecture(a, TrainTask(**base, epochs=args.epochs), s["seed"])
        if not t.ok:
            raise SystemExit(f"architecture {i} failed: {t.error}")
        est = (t.seconds - t.train_seconds) + t.train_seconds * scale
        full.append(est)
        print(f"standalone {i + 1}/{len(archs)}: {t.steps} steps {t.train_seconds:.1f} s + {t.seconds - t.train_seconds:.1f} s "
              f"other -> {est:.0f} s for {s['epochs']} epochs (the run: "
              f"{models[a.canonical].get('standalone_seconds', float('nan')):.0f} s)", flush=True)

    supernet_s = step_s * s["steps"]
    mean = statistics.fmean(full)
    print(f"supernet {s['steps']} steps ~{supernet_s:.0f} s; standalone {s['epochs']} epochs: mean {mean:.0f} s "
          f"[{min(full):.0f}, {max(full):.0f}] -> the supernet costs {supernet_s / mean:.1f} standalone trainings "
          f"(recorded in the run: {results['summary'].get('supernet_cost_in_standalone_trainings', float('nan')):.1f}); "
          f"load {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
    main()
