"""Does a LiteRT timing process slow down as it converts models? (issue 32: in a LiteRT table's eval, T's
model ran 27 % slower in the last chunk than in the first, at a load of 1.0; docs/results/2026-12-07-lut-
litert.md.) One process: T's model converted and timed; then N random networks converted and loaded (and
dropped), as an eval does; then T timed again with the same runner and with a runner converted afresh, and T
timed in a new process beside it. Ratios printed side by side; the machine should be quiet.

    python benchmarks/litert_drift.py --networks 64
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time

from mnas.latency import LatencySettings, get_backend
from mnas.latency.local import random_input
from mnas.latency.protocol import time_interleaved
from mnas.space import resolve_arch
from mnas.space.mnasnet import MnasNetSpace, space_file


def time_t(runners: list, settings: LatencySettings) -> list[float]:
    shape = settings.input_shape()
    x = random_input(shape)
    return [t.median_ms for t in time_interleaved([lambda r=r: r(x) for r in runners], settings)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=64)
    ap.add_argument("--target", default="mnasnet-a1")
    ap.add_argument("--child", action="store_true", help="time T once in this fresh process and print it")
    args = ap.parse_args()
    settings = LatencySettings(resolution=224, threads=1)
    be = get_backend("litert")
    arch = resolve_arch(args.target)[1]
    shape = settings.input_shape()
    if args.child:
        print(json.dumps(time_t([be.runner(arch, shape, settings)], settings)))
        return 0
    first = be.runner(arch, shape, settings)
    before = time_t([first], settings)[0]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sp = MnasNetSpace.load(space_file(None))
    rng = random.Random(0)
    t0 = time.perf_counter()
    for i in range(args.networks):
        be.runner(sp.sample(rng), shape, settings)  # converted and loaded, then dropped
        if (i + 1) % 16 == 0:
            print(f"{i + 1}/{args.networks} converted ({time.perf_counter() - t0:.0f} s)", flush=True)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fresh = be.runner(arch, shape, settings)
    same, again = time_t([first, fresh], settings)
    child = json.loads(subprocess.run([sys.executable, __file__, "--child", "--target", args.target],
                                      capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])[0]
    print(f"T ({args.target}) before: {before:.3f} ms; after {args.networks} conversions: the same runner "
          f"{same:.3f} ms ({same / before:.3f}x), a new runner {again:.3f} ms ({again / before:.3f}x); a new "
          f"process: {child:.3f} ms ({child / before:.3f}x). Peak memory {rss0:.0f} -> {rss1:.0f} MB.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
