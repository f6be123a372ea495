"""Why do two quiet timings of the same LAT/T disagree? (issue 32) New sessions, or the machine?

    python benchmarks/ratio_drift.py OUT.json [--archs 12] [--repeats 3] [--seed S]

For each of ``--archs`` random ``mnasnet`` architectures (seed drawn at run time unless given), LAT/T against
MobileNetV2 on onnxruntime (224 px, 1 thread, the default protocol, wall clock; the ratio of the medians,
as the load benchmarks' truth) is timed ``--repeats`` times with the *same* two sessions, built once, and
``--repeats`` times with *new* sessions built for each timing, alternately (same, new, same, new, ...), so
that a drift of the machine lands on both. Reported: how often two timings of one kind agree within +-5 %,
and the median spread (largest over smallest ratio, minus one) per kind, for the ratio of the wall-clock
medians and, from the same calls, for the ratio of the fastest CPU-clock calls of the first rounds (the
search's estimator at one thread, ``mnas.latency.relative.ratio_from``). ``--pin-core N`` times everything
on core N (``latency.pin_core``). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import random
import statistics
from pathlib import Path

from mnas.latency import get_backend
from mnas.latency.local import random_input
from mnas.latency.protocol import time_interleaved
from mnas.latency.settings import LatencySettings
from mnas.space import load_space, resolve_arch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--pin-core", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    space, backend = load_space("mnasnet"), get_backend("onnxruntime")
    rng = random.Random(f"ratio-drift:{seed}")
    archs = [space.sample(rng) for _ in range(args.archs)]
    reference = resolve_arch("mobilenet-v2")[1]
    settings = LatencySettings(resolution=args.resolution, threads=1, pin_core=args.pin_core)
    shape = settings.input_shape()

    def sessions(arch):
        return [functools.partial(backend.runner(m, shape, settings), random_input(shape)) for m in (reference, arch)]

    def ratio(fns) -> tuple[float, float]:
        t, a = time_interleaved(fns, settings)
        return a.median_ms / t.median_ms, a.cpu_min_ms / t.cpu_min_ms

    rows = []
    for i, arch in enumerate(archs):
        kept = sessions(arch)
        same, new, same_cpu, new_cpu = [], [], [], []
        for _ in range(args.repeats):
            for wall, cpu, fns in ((same, same_cpu, kept), (new, new_cpu, sessions(arch))):
                w, c = ratio(fns)
                wall.append(w)
                cpu.append(c)
        rows.append({"arch": arch.canonical, "same": same, "new": new, "same_cpu_min": same_cpu,
                     "new_cpu_min": new_cpu, "load": round(os.getloadavg()[0], 2)})
        print(f"{i + 1}/{len(archs)} same {[round(x, 4) for x in same]} new {[round(x, 4) for x in new]} (cpu-min: "
              f"same {[round(x, 4) for x in same_cpu]} new {[round(x, 4) for x in new_cpu]})", flush=True)

    def summary(kind: str) -> dict:
        pairs = [abs(a / b - 1) <= 0.05 for r in rows for a, b in itertools.combinations(r[kind], 2)]
        spreads = [max(r[kind]) / min(r[kind]) - 1 for r in rows]
        return {"pairs_within_5pct": [sum(pairs), len(pairs)], "median_spread": statistics.median(spreads),
                "max_spread": max(spreads)}

    result = {"seed": seed, "settings": vars(args) | {"out": str(args.out)}, "same_sessions": summary("same"),
              "new_sessions": summary("new"), "same_sessions_cpu_min": summary("same_cpu_min"),
              "new_sessions_cpu_min": summary("new_cpu_min"), "load": [min(r["load"] for r in rows), max(r["load"] for r in rows)],
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
