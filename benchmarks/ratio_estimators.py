"""Which estimate of LAT/T survives a loaded machine? (issue 32, "Done when" line 1)

    python benchmarks/ratio_estimators.py WORKDIR --archs 30 --seed S [--load search | burn:4]
    python benchmarks/ratio_estimators.py WORKDIR --smoke       # a minute: checks the script, not the machine

A search times each candidate beside T's model in interleaved rounds and rewards their ratio. Under load the
ratio of the two medians was off by more than 5 % for half the trials or more
(docs/results/2026-12-06-latency-trust.md). This script keeps every call's time on both clocks so that
estimators can be compared on the same calls:

1. ``--archs`` random architectures of the space (seeded by ``--seed``), each timed beside T (MobileNetV2) in
   ``--rounds`` interleaved rounds of ``--per-round`` calls (onnxruntime, 224 px, 1 thread) while a second
   mnas search (or N spinning processes) loads the machine; every call's wall and CPU time is kept.
2. The load stops; once the one-minute load is under ``--quiet-load``, every architecture is timed beside T
   twice more, quietly, with the default protocol on the wall clock: the truth is the median of the two
   ratios, and their disagreement is the quiet machine's own noise floor.
3. For each estimator, clock and number of rounds (the first 5, as a search's default 30 runs in 5 rounds,
   or all): the fraction of architectures whose loaded estimate is within +-5 % of the quiet ratio.

Resumable: WORKDIR/state.json is written after every architecture.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from mnas.latency import get_backend
from mnas.latency.local import random_input
from mnas.latency.protocol import time_interleaved
from mnas.latency.settings import LatencySettings
from mnas.space import load_space, resolve_arch

sys.path.insert(0, str(Path(__file__).parent))
from latency_under_load import Load, clopper_pearson, save, wait_quiet  # noqa: E402

WITHIN = 0.05


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# LAT/T from the calls of one model (a) and of T (t), each a list of rounds of call times, round r of both
# timed one after the other
ESTIMATORS: dict[str, Callable[[list[list[float]], list[list[float]]], float]] = {
    "median of round medians (today)": lambda a, t: (statistics.median(statistics.median(r) for r in a)
                                                     / statistics.median(statistics.median(r) for r in t)),
    "median of per-round ratios": lambda a, t: statistics.median(statistics.median(x) / statistics.median(y)
                                                                 for x, y in zip(a, t)),
    "minimum call": lambda a, t: min(min(r) for r in a) / min(min(r) for r in t),
    "10th percentile call": lambda a, t: (percentile([x for r in a for x in r], 0.1)
                                          / percentile([x for r in t for x in r], 0.1)),
    "median of per-round minima ratios": lambda a, t: statistics.median(min(x) / min(y) for x, y in zip(a, t)),
}


class DualClock:
    """A wall clock for ``time_interleaved`` that also notes the process's CPU time at every read: consecutive
    reads bracket one call."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, int]] = []

    def __call__(self) -> int:
        w, c = time.perf_counter_ns(), time.process_time_ns()
        self.reads.append((w, c))
        return w

    def calls(self) -> list[tuple[float, float]]:
        r = self.reads
        return [((r[i + 1][0] - r[i][0]) / 1e6, (r[i + 1][1] - r[i][1]) / 1e6) for i in range(0, len(r) - 1, 2)]


def time_beside(backend, arch, reference, settings: LatencySettings) -> dict[str, Any]:
    """``arch`` and T in the same interleaved rounds; every call's wall and CPU ms, per model and round."""
    shape = settings.input_shape()
    fns = [functools.partial(backend.runner(m, shape, settings), random_input(shape)) for m in (reference, arch)]
    clock = DualClock()
    before = os.getloadavg()[0]
    time_interleaved(fns, settings, clock=clock)
    calls, k = clock.calls(), settings.runs // settings.rounds
    out: dict[str, Any] = {"load": [round(before, 2), round(os.getloadavg()[0], 2)]}
    for which, i in (("t", 0), ("a", 1)):
        for c, name in ((0, "wall"), (1, "cpu")):
            out[f"{which}_{name}"] = [[calls[(r * 2 + i) * k + j][c] for j in range(k)]
                                      for r in range(settings.rounds)]
    return out


def quiet_ratio(backend, arch, reference, settings: LatencySettings) -> float:
    shape = settings.input_shape()
    fns = [functools.partial(backend.runner(m, shape, settings), random_input(shape)) for m in (reference, arch)]
    t, a = time_interleaved(fns, settings)
    return a.median_ms / t.median_ms


def analyse(state: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in state["archs"] if "quiet" in r]
    truth = [statistics.median(r["quiet"]) for r in rows]
    noise = [abs(r["quiet"][0] / r["quiet"][1] - 1) for r in rows]
    k_noise = sum(x <= WITHIN for x in noise)
    out: dict[str, Any] = {"archs": len(rows), "within": WITHIN,
                           "quiet_vs_quiet_within": [k_noise, len(rows), clopper_pearson(k_noise, len(rows))],
                           "quiet_vs_quiet_median_abs_error": statistics.median(noise) if noise else None,
                           "load_while_timed": [min(r["loaded"]["load"][0] for r in rows),
                                                max(r["loaded"]["load"][1] for r in rows)] if rows else None,
                           "estimators": []}
    rounds_all = len(rows[0]["loaded"]["a_wall"]) if rows else 0
    for name, fn in ESTIMATORS.items():
        for clock in ("wall", "cpu"):
            for nr in sorted({min(5, rounds_all), rounds_all}):
                errs = [fn(r["loaded"][f"a_{clock}"][:nr], r["loaded"][f"t_{clock}"][:nr]) / q - 1
                        for r, q in zip(rows, truth)]
                k = sum(abs(e) <= WITHIN for e in errs)
                out["estimators"].append({"estimator": name, "clock": clock, "rounds": nr, "within": k,
                                          "n": len(errs), "ci95": clopper_pearson(k, len(errs)),
                                          "median_error": statistics.median(errs),
                                          "median_abs_error": statistics.median(abs(e) for e in errs)})
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["| estimator | clock | rounds | within +-5 % | 95 % CI | median error | median abs error |",
             "|---|---|---|---|---|---|---|"]
    for e in result["estimators"]:
        lines.append(f"| {e['estimator']} | {e['clock']} | {e['rounds']} | {e['within']} / {e['n']} | {e['ci95']} "
                     f"| {e['median_error']:+.1%} | {e['median_abs_error']:.1%} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--space", default="mnasnet")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--per-round", type=int, default=6)
    ap.add_argument("--load", default="search", help="search (a second mnas search), burn:N or search+burn:N")
    ap.add_argument("--settle", type=float, default=60.0)
    ap.add_argument("--quiet-load", type=float, default=1.0)
    ap.add_argument("--quiet-wait", type=float, default=1800.0)
    ap.add_argument("--smoke", action="store_true", help="3 architectures at 32 px beside one burner, no waiting")
    args = ap.parse_args()
    if args.smoke:
        args.archs, args.resolution, args.load, args.settle, args.quiet_wait = 3, 32, "burn:1", 1.0, 0.0
    # what latency_under_load's Load needs to start a second search
    args.trials, args.clock = args.archs, "wall"
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    path = work / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    want = {k: getattr(args, k) for k in ("archs", "seed", "space", "resolution", "rounds", "per_round", "load")}
    if state.setdefault("args", want) != want:
        raise SystemExit(f"{work} holds a run with {state['args']}, not {want}: give another WORKDIR")
    space = load_space(args.space)
    rng = random.Random(f"ratio-estimators:{args.seed}")
    archs = [space.sample(rng) for _ in range(args.archs)]
    reference = resolve_arch("mobilenet-v2")[1]
    base = LatencySettings(resolution=args.resolution, threads=1)
    loaded = base.replace(runs=args.rounds * args.per_round, rounds=args.rounds, max_remeasures=0)
    backend = get_backend("onnxruntime")
    rows = state.setdefault("archs", [{"arch": a.canonical} for a in archs])
    if any("loaded" not in r for r in rows):
        load = Load(args.load, work, args)
        try:
            time.sleep(args.settle)
            for i, (r, a) in enumerate(zip(rows, archs)):
                if "loaded" not in r:
                    r["loaded"] = time_beside(backend, a, reference, loaded)
                    save(path, state)
                print(f"loaded {i + 1}/{len(rows)} load {r['loaded']['load']}", flush=True)
        finally:
            load.stop()
    state["quiet_load_before"] = wait_quiet(args)
    for i, (r, a) in enumerate(zip(rows, archs)):
        while len(r.setdefault("quiet", [])) < 2:
            r["quiet"].append(quiet_ratio(backend, a, reference, base))
            r.setdefault("quiet_load", []).append(round(os.getloadavg()[0], 2))
            save(path, state)
        print(f"quiet {i + 1}/{len(rows)}", flush=True)
    result = {"smoke": args.smoke, **analyse(state),
              "quiet_load": [min(x for r in rows for x in r["quiet_load"]),
                             max(x for r in rows for x in r["quiet_load"])]}
    save(work / "result.json", result)
    print(table(result))
    print(f"quiet against quiet within +-5 %: {result['quiet_vs_quiet_within']}; load while timed "
          f"{result['load_while_timed']}, quiet {result['quiet_load']}")


if __name__ == "__main__":
    main()
