"""Does a search on a busy machine record latencies it can trust? (issue 32, "Done when" line 1)

    python benchmarks/latency_under_load.py WORKDIR [--trials 12] [--resolution 224] [--load burn:4 | search]
    python benchmarks/latency_under_load.py WORKDIR --smoke      # minutes: checks the script, not the machine

1. A small search (onnxruntime, 1 thread, T = MobileNetV2 timed beside every trial, ``latency.relative``)
   runs while a second process loads the machine: ``burn:N`` (N processes spinning on a core each; N = 4
   gives a load of about 4) or ``search`` (a second mnas search beside it, as the issue describes).
2. The load stops; the script waits until the one-minute load falls under ``--quiet-load`` (at most
   ``--quiet-wait`` seconds), then times every completed trial again, quietly, interleaved with T's model
   (``mnas.search.retime``: 8 trials and T per interleaved timing, each timing kept with its load).
3. For each trial: is its recorded LAT/T within +-5 % of the quiet ratio? Is its recorded absolute latency
   (the same rounds' own median, what a search without ``latency.relative`` would reward) within +-5 % of
   the quiet absolute figure? The fractions come with 95 % Clopper-Pearson intervals, the loads beside them.

Everything lives in WORKDIR: the search (``search/``, resumed if it was stopped), the load's search
(``load-search/``), ``state.json`` (which step is done), and ``result.json`` (``result-smoke.json`` with
``--smoke``). A result whose quiet step ran on a machine with a load above ``--quiet-load`` says so
(``"quiet_machine": false``) and is not a measurement to report; ``--smoke`` results never are.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mnas.latency.fingerprint import fingerprint
from mnas.run import LatencyJob
from mnas.search.config import config_from_dict
from mnas.search.driver import Search
from mnas.search.retime import CHUNK, reference_arch, retime
from mnas.store import Store
from mnas.testing import tiny

WITHIN = 0.05


def search_config(args: argparse.Namespace) -> dict[str, Any]:
    """The measured search: onnxruntime at 1 thread, T = MobileNetV2 beside every trial; the digits proxy of
    the tests, so that most of a trial is its timing."""
    latency = {"backend": "onnxruntime", "resolution": args.resolution, "threads": 1, "cache": False,
               "relative": True, "retime_top": 0, "clock": args.clock}
    if args.smoke:
        latency.update(runs=6, rounds=3, warmup=1)
    return tiny(name="latency-under-load", trials=args.trials, seed=args.seed, live_view=False,
                reward={"preset": "soft", "target_model": "mobilenet-v2"}, latency=latency,
                **{"strategy.name": "random"})


def load_config(args: argparse.Namespace) -> dict[str, Any]:
    """The second search, the load: the same settings, more trials than the measured one will need."""
    cfg = search_config(args)
    return {**cfg, "name": "load", "seed": args.seed + 1, "trials": 10_000,
            "latency": {**cfg["latency"], "relative": False}}


def burn() -> None:
    while True:
        pass


class Load:
    """The machine's load while the search runs: spinning processes or a second search, and the load
    average sampled every few seconds."""

    def __init__(self, spec: str, workdir: Path, args: argparse.Namespace) -> None:
        self.spec, self.procs, self.samples = spec, [], []
        self._stop = threading.Event()
        for part in spec.split("+"):  # e.g. search+burn:2
            self._start(part, workdir, args)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _start(self, spec: str, workdir: Path, args: argparse.Namespace) -> None:
        if spec.startswith("burn:"):
            ctx = multiprocessing.get_context("spawn")
            for _ in range(int(spec.split(":", 1)[1])):
                p = ctx.Process(target=burn, daemon=True)
                p.start()
                self.procs.append(p)
        elif spec == "search":
            cfg_path = workdir / "load.yaml"
            import yaml

            cfg_path.write_text(yaml.safe_dump(load_config(args)))
            out = workdir / "load-search"
            resume = ["--resume"] if (out / "experiment.db").exists() else []
            self.procs.append(subprocess.Popen([sys.executable, "-m", "mnas", "search", str(out), "--config",
                                                str(cfg_path), *resume], stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        else:
            raise SystemExit(f"--load {spec}: give burn:N, search or both (search+burn:N)")

    def _sample(self) -> None:
        while not self._stop.wait(5.0):
            self.samples.append(round(os.getloadavg()[0], 2))

    def stop(self) -> None:
        self._stop.set()
        for p in self.procs:  # only the processes this script started
            if isinstance(p, subprocess.Popen):
                p.terminate()
                p.wait()
            else:
                p.terminate()
                p.join()


def save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run_search(workdir: Path, args: argparse.Namespace, state: dict[str, Any]) -> None:
    out = workdir / "search"
    cfg = config_from_dict(search_config(args))
    load = Load(args.load, workdir, args)
    try:
        time.sleep(args.settle)  # let the load average climb before the first timing
        with Search.open(cfg, out, resume=(out / "experiment.db").exists()) as search:
            search.run()
    finally:
        load.stop()
    state["search"] = {"load": args.load, "load_samples": load.samples, "done": time.time()}


def wait_quiet(args: argparse.Namespace) -> float:
    started = time.monotonic()
    while os.getloadavg()[0] > args.quiet_load and time.monotonic() - started < args.quiet_wait:
        time.sleep(5)
    return round(os.getloadavg()[0], 2)


def retime_quietly(workdir: Path, args: argparse.Namespace, state: dict[str, Any], save_state) -> None:
    """Every completed trial timed again beside T, CHUNK at a time, saved after each chunk."""
    with Store(workdir / "search", create=False) as store:
        cfg = config_from_dict(store.meta().config)
        target, reference = store.meta().target_ms, reference_arch(cfg)
        job = LatencyJob.from_config(cfg.latency, None)
        # the truth is what a user waits: the wall clock, whatever clock the search timed with
        job = dataclasses.replace(job, settings=job.settings.replace(clock="wall"))
        for n in range(1, args.quiet_timings + 1):  # each pass times every trial once more
            todo = [t for t in store.trials("completed") if len(t.retimed or []) < n]
            for start in range(0, len(todo), CHUNK):
                retime(store, todo[start:start + CHUNK], job, reference, target)
                state.setdefault("quiet", {})["timed"] = start + len(todo[start:start + CHUNK])
                save_state()
                print(f"re-timed {state['quiet']['timed']}/{len(todo)} (pass {n})", flush=True)


def clopper_pearson(k: int, n: int) -> list[float] | None:
    if n == 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return [round(ci.low, 4), round(ci.high, 4)]


def analyse(workdir: Path, state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    with Store(workdir / "search", readonly=True) as store:
        target = store.meta().target_ms
        for t in store.trials("completed"):
            if not t.retimed or t.latency_ratio is None:
                continue
            # the truth: the ratio of the two wall-clock medians of each quiet timing (what a user waits),
            # whichever estimate the search records (mnas.latency.relative.ratio_from)
            quiet = [e["latency_ms"] / e["reference_ms"] for e in t.retimed]
            quiet_ratio = statistics.median(quiet)
            quiet_ms = statistics.median(e["latency_ms"] for e in t.retimed)
            rows.append({"trial": t.id, "recorded_ratio": t.latency_ratio, "quiet_ratio": quiet_ratio,
                         "recorded_ms": t.latency_abs_ms, "quiet_ms": quiet_ms,
                         "ratio_error": t.latency_ratio / quiet_ratio - 1, "abs_error": t.latency_abs_ms / quiet_ms - 1,
                         "quiet_ratios": quiet, "ratio_error_first": t.latency_ratio / quiet[0] - 1,
                         "ratio_from": t.latency["extra"].get("relative", {}).get("ratio_from", "median"),
                         "load": t.latency["extra"].get("load"), "quiet_load": t.retimed[-1]["load"]})
    n = len(rows)
    k_ratio = sum(abs(r["ratio_error"]) <= WITHIN for r in rows)
    k_abs = sum(abs(r["abs_error"]) <= WITHIN for r in rows)
    k_first = sum(abs(r["ratio_error_first"]) <= WITHIN for r in rows)
    pairs = [r["quiet_ratios"][:2] for r in rows if len(r["quiet_ratios"]) > 1]
    k_floor = sum(abs(a / b - 1) <= WITHIN for a, b in pairs)
    quiet_loads = [x for r in rows for x in r["quiet_load"]]
    return {"smoke": args.smoke, "quiet_machine": bool(quiet_loads) and max(quiet_loads) <= args.quiet_load,
            "device": fingerprint(), "target_ms": target, "trials": n, "within": WITHIN,
            "load_during_search": state["search"]["load"], "load_samples": state["search"]["load_samples"],
            "quiet_load": [min(quiet_loads), max(quiet_loads)] if quiet_loads else None,
            "ratio_within": k_ratio, "ratio_fraction": k_ratio / n if n else None,
            "ratio_ci95": clopper_pearson(k_ratio, n),
            "absolute_within": k_abs, "absolute_fraction": k_abs / n if n else None,
            "absolute_ci95": clopper_pearson(k_abs, n),
            "quiet_timings": min((len(r["quiet_ratios"]) for r in rows), default=0),
            "ratio_within_first_timing": k_first, "ratio_first_ci95": clopper_pearson(k_first, n),
            "quiet_vs_quiet_within": [k_floor, len(pairs), clopper_pearson(k_floor, len(pairs))], "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="the clock the search times with (the quiet re-timing always uses the wall clock)")
    ap.add_argument("--load", default="burn:4", help="burn:N (N spinning processes), search (a second search) or "
                    "both (search+burn:N)")
    ap.add_argument("--settle", type=float, default=60.0, help="seconds of load before the search starts")
    ap.add_argument("--quiet-load", type=float, default=1.0, help="the quiet step waits for a load under this")
    ap.add_argument("--quiet-wait", type=float, default=900.0, help="but at most this many seconds")
    ap.add_argument("--quiet-timings", type=int, default=1, help="quiet re-timings per trial; the truth is "
                    "their median (with 2 or more, the first two's agreement is the noise floor)")
    ap.add_argument("--smoke", action="store_true", help="3 trials at 32 px, one burner, no waiting: checks the "
                    "script; its numbers are not a measurement")
    args = ap.parse_args()
    if args.smoke:
        args.trials, args.resolution, args.load, args.settle, args.quiet_wait = 3, 32, "burn:1", 2.0, 0.0
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    state_path = workdir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    want = {"trials": args.trials, "resolution": args.resolution, "seed": args.seed, "smoke": args.smoke}
    if state.setdefault("args", want) != want:
        raise SystemExit(f"{workdir} holds a run with {state['args']}, not {want}: give another WORKDIR")
    if "search" not in state:
        run_search(workdir, args, state)
        save(state_path, state)
    if not state.get("quiet", {}).get("done"):
        state.setdefault("quiet", {})["load_before"] = wait_quiet(args)
        retime_quietly(workdir, args, state, lambda: save(state_path, state))
        state["quiet"]["done"] = True
        save(state_path, state)
    result = analyse(workdir, state, args)
    out = workdir / ("result-smoke.json" if args.smoke else "result.json")
    save(out, result)
    print(f"against the first quiet timing alone: {result['ratio_within_first_timing']}; two quiet timings agree "
          f"within +-5 %: {result['quiet_vs_quiet_within']}")
    print(f"{result['trials']} trials; LAT/T within +-5 % of the quiet ratio: {result['ratio_within']} "
          f"(95 % CI {result['ratio_ci95']}); absolute within +-5 %: {result['absolute_within']} "
          f"(95 % CI {result['absolute_ci95']}); load during the search {result['load_samples']}, quiet step "
          f"{result['quiet_load']}{'' if result['quiet_machine'] else ' (NOT a quiet machine: not a result)'}"
          f"{' [smoke]' if args.smoke else ''}")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
