"""Does a LiteRT timing process slow down as it converts models? (issue 32: in a LiteRT table's eval, T's
model ran 27 % slower in the last chunk than in the first, at a load of 1.0; docs/results/2026-12-07-lut-
litert.md.) One process: T's model converted and timed; then, round after round, N random networks converted
and loaded (kept loaded through the run with ``--keep``, as an eval keeps a chunk's), and after each round T
timed again with its first runner and with a runner converted afresh, and in a new process beside it (the
machine's speed at that moment, from a process that converted nothing else). ``--convert worker`` converts in
a child process instead (the timing process only loads the files), to tell the conversions' own effect from
the machine's. Ratios printed side by side; the machine should be quiet.

    python benchmarks/litert_drift.py --networks 64
    python benchmarks/litert_drift.py --rounds 3 --networks 24 --keep --convert here
    python benchmarks/litert_drift.py --rounds 3 --networks 24 --keep --convert worker
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import mnas.latency.local as local
from mnas.latency import LatencySettings, get_backend
from mnas.latency.local import random_input
from mnas.latency.protocol import time_interleaved
from mnas.space import resolve_arch
from mnas.space.mnasnet import MnasNetSpace, space_file


def time_t(runners: list, settings: LatencySettings) -> list[float]:
    shape = settings.input_shape()
    x = random_input(shape)
    return [t.median_ms for t in time_interleaved([lambda r=r: r(x) for r in runners], settings)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_ms(target: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", "--target", target],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=64, help="networks converted per round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep every converted network loaded, as an eval does")
    ap.add_argument("--convert", choices=["here", "worker"], default="here",
                    help="convert in the timing process (as mnas does) or in one child process")
    ap.add_argument("--target", default="mnasnet-a1")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--child", action="store_true", help="time T once in this fresh process and print it")
    args = ap.parse_args()
    settings = LatencySettings(resolution=224, threads=1)
    be = get_backend("litert")
    arch = resolve_arch(args.target)[1]
    shape = settings.input_shape()
    if args.child:
        print(json.dumps(time_t([be.runner(arch, shape, settings)], settings)))
        return 0
    pool = None
    if args.convert == "worker":
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        here = local.model_file
        local.model_file = lambda *a: pool.submit(here, *a).result()  # the runner's one call of it
    first = be.runner(arch, shape, settings)
    before = time_t([first], settings)[0]
    ref0 = child_ms(args.target)
    rows = [{"round": 0, "converted": 0, "same": before, "fresh": before, "child": ref0, "rss_mb": rss_mb()}]
    print(f"round 0: T {before:.3f} ms here, {ref0:.3f} ms in a new process; rss {rss_mb():.0f} MB", flush=True)
    sp = MnasNetSpace.load(space_file(None))
    rng = random.Random(0)
    kept = []
    t0 = time.perf_counter()
    for r in range(1, args.rounds + 1):
        for _ in range(args.networks):
            run = be.runner(sp.sample(rng), shape, settings)  # converted and loaded
            if args.keep:
                kept.append(run)
        fresh = be.runner(arch, shape, settings)
        same, again = time_t([first, fresh], settings)
        ref = child_ms(args.target)
        rows.append({"round": r, "converted": r * args.networks, "same": same, "fresh": again, "child": ref,
                     "rss_mb": rss_mb(), "s": time.perf_counter() - t0})
        print(f"round {r}: {r * args.networks} converted ({time.perf_counter() - t0:.0f} s); T here "
              f"{same:.3f} ms (first runner), {again:.3f} (new runner); a new process {ref:.3f} ms; "
              f"here/new process {same / ref:.3f} / {again / ref:.3f}; rss {rss_mb():.0f} MB", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"convert={args.convert} keep={args.keep}: T here against a new process, first runner "
          + ", ".join(f"{x['same'] / x['child']:.3f}" for x in rows) + "; new runner "
          + ", ".join(f"{x['fresh'] / x['child']:.3f}" for x in rows) + f" (rounds 0..{args.rounds}); "
          f"against round 0 here: {rows[-1]['same'] / before:.3f}x. Peak memory {peak:.0f} MB.")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "load": os.getloadavg()}, f, indent=1)
    if pool:
        pool.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
