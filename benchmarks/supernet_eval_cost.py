"""What a candidate read from a trained supernet costs, re-timed apart from its training (issue 29).

    python benchmarks/supernet_eval_cost.py runs/sn-elastic [runs/sn-elastic-cifar ...]

For each ``supernet_fidelity.py`` output folder: every architecture of its results evaluated again
(inherited weights, BatchNorm recalibrated, held-out top-1; one torch thread), the seconds of each, the
first call left out (it loads the data), and the largest top-1 difference from the recorded one (0: the
evaluation is deterministic). Run it on a quiet machine (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from mnas.space import Architecture
from mnas.supernet.evaluate import SupernetEvaluator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="supernet_fidelity.py output folders (each with results.json)")
    runs = ap.parse_args().runs
    supernets = {}
    for run in runs:
        if not (Path(run) / "results.json").is_file():
            ap.error(f"{run} holds no results.json: pass a supernet_fidelity.py output folder")
        # the run's own supernet, or the one it read with --supernet
        supernets[run] = json.load(open(f"{run}/results.json"))["settings"].get("supernet") or f"{run}/supernet"
        if not Path(supernets[run]).is_dir():
            ap.error(f"{run}'s supernet {supernets[run]} is not there: pass a supernet_fidelity.py output folder")
    torch.set_num_threads(1)
    for run in runs:
        models = json.load(open(f"{run}/results.json"))["models"]
        archs = [Architecture.parse(a) for a in sorted(models, key=lambda a: models[a]["index"])]
        ev = SupernetEvaluator(supernets[run], "cpu", 1)
        secs, diffs = [], []
        for a in archs:
            t0 = time.perf_counter()
            out = ev.evaluate(a)
            secs.append(time.perf_counter() - t0)
            diffs.append(abs(out["top1"] - models[a.canonical]["supernet_top1"]))
        secs = secs[1:]
        print(f"{run}: {len(secs)} candidates, mean {statistics.fmean(secs):.3f} s, median "
              f"{statistics.median(secs):.3f} s, {3600 / statistics.fmean(secs):.0f} an hour; largest top-1 "
              f"difference from the recorded {max(diffs):.4f}", flush=True)


if __name__ == "__main__":
    main()
