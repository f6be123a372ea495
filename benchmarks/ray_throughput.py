"""Trials per hour on this machine: the in-process executor, and Ray with 1 and with 2 worker processes.

Each Ray worker is one process with one CPU unit and one thread (torch and OpenMP), on a private Ray
instance bound to loopback; latencies are measured in the driver between training waves (no device
resource), as docs/ray.md describes. Every configuration runs the same seeded random search, so the same
architectures, in a fresh experiment directory. The rate counts trials finished after the first wave
(warm-up: worker start, imports) over the time they took; rounds alternate the configurations so that
background load hits them alike. Other people's work on a shared machine changes the numbers: the load
average is printed with them.

    python benchmarks/ray_throughput.py                 # tiny search (digits @ 16 px, latency @ 32 px)
    python benchmarks/ray_throughput.py --trials 20 --rounds 2 --preset demo
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

PRESETS = {
    "tiny": {  # tests/test_search_loop.py's settings
        "latency": {"backend": "onnxruntime", "resolution": 32, "runs": 5, "warmup": 1},
        "proxy": {"dataset": "digits", "resolution": 16, "width_multiplier": 0.25, "epochs": 1, "batch_size": 64,
                  "train_limit": 128},
    },
    "demo": {  # configs/demo.yaml's proxy and latency
        "latency": {"backend": "onnxruntime", "resolution": 224, "threads": 1},
        "proxy": {"dataset": "animal-mnist", "resolution": 28, "width_multiplier": 0.5, "epochs": 1,
                  "batch_size": 64, "train_limit": 3000},
    },
}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_run(preset: str, trials: int, executor: dict, seed: int) -> dict:
    import torch

    from mnas.search.config import config_from_dict
    from mnas.run import make_executor
    from mnas.search.driver import Search

    torch.set_num_threads(1)  # the in-process executor trains in this process: one thread, like a worker
    cfg = config_from_dict({"name": "bench", "seed": seed, "trials": trials, "strategy": {"name": "random"},
                            "reward": {"preset": "soft", "target_ms": 1.0}, **PRESETS[preset],
                            "executor": executor})
    with tempfile.TemporaryDirectory(prefix="mnas-bench-") as out:
        t0 = time.time()
        exp = Search.open(cfg, Path(out) / "run", executor=make_executor(cfg.executor))  # Ray starts here
        startup = time.time() - t0
        state = exp.run()
        finished = sorted(t.finished for t in exp.store.trials() if t.finished)
        exp.store.close()
    warm = executor.get("workers", 1) if executor["kind"] == "ray" else 1
    timed = finished[warm - 1:]
    rate = (len(timed) - 1) / (timed[-1] - timed[0]) * 3600 if len(timed) > 1 else float("nan")
    return {"completed": state.completed, "failed": state.failed, "startup_s": round(startup, 1),
            "search_s": round(finished[-1] - t0 - startup, 1), "trials_per_hour": round(rate, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=14)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--no-local", action="store_true", help="skip the in-process executor")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    configs = {"ray, 1 worker": {"kind": "ray", "workers": 1, "cpus_per_trial": 1},
               "ray, 2 workers": {"kind": "ray", "workers": 2, "cpus_per_trial": 1}}
    if not args.no_local:
        configs = {"local (in-process)": {"kind": "local"}, **configs}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    loads = [load()]
    for r in range(args.rounds):
        for name, executor in configs.items():
            res = one_run(args.preset, args.trials, executor, seed=0)
            res["load_after"] = load()
            results[name].append(res)
            print(f"round {r + 1} {name:20s} {json.dumps(res)}", flush=True)
    loads.append(load())
    print(f"\n{args.preset} search, {args.trials} trials a run, {args.rounds} rounds, {os.cpu_count()} CPUs, "
          f"load average before {loads[0]}, after {loads[-1]}")
    summary = {}
    for name, runs in results.items():
        rates = [x["trials_per_hour"] for x in runs]
        summary[name] = {"median_trials_per_hour": round(statistics.median(rates), 1), "runs": runs}
        print(f"  {name:20s} median {statistics.median(rates):8.1f} trials/h   "
              f"({', '.join(f'{x:.1f}' for x in rates)}; startup {runs[0]['startup_s']} s)")
    if args.json:
        args.json.write_text(json.dumps({"preset": args.preset, "trials": args.trials, "loads": loads,
                                         "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
