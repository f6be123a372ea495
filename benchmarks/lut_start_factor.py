"""Does the speed factor a search times at its start transfer better with every calibration network as a
reference (the round the build timed them in) than with the first 10 (the default)? (issue 32)

    python benchmarks/lut_start_factor.py TABLE.json [TABLE.json ...] --dir DIR [--samples 200]

For each table, two start timings, each with T's model (MnasNet-A1) among the references as a search on
``lut:PATH?target=measure`` times it: the first ``speed.REFERENCES`` calibration networks, and all of them;
their order alternates from one table to the next. Then ``lut eval`` on ``--samples`` networks of a seed
drawn now (kept for a resumed run), with no start timing of its own, T timed in every chunk of rounds.
Judged on the eval's samples, per start timing: the factor against the eval's own (references among the
networks), the milliseconds as a search would show them (unscaled prediction x the start factor) and LAT/T
with T timed (unscaled prediction / (T timed / the start factor)), each within ±10 % and ±5 % with
Clopper-Pearson bounds. DIR/results.json is written after each table; rerun the command to resume.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.fileio import atomic_write
from mnas.latency.lut import LatencyTable, evaluate
from mnas.latency.lut.evaluate import fresh_seed, metrics, resolve_target
from mnas.latency.lut.speed import REFERENCES, time_references
from mnas.store.lock import DirectoryLock
from table_runs import script, table_args


def judge(res: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """The start timing ``start`` judged on the eval ``res``'s samples."""
    s = res["samples"]
    factor, t_frame = start["factor"], start["also_ms"][0] / start["factor"]
    ms = metrics([x["unscaled_ms"] * factor for x in s], [x["measured_ms"] for x in s])
    ratio = metrics([x["unscaled_ms"] / t_frame for x in s], [x["measured_ratio"] for x in s])
    keep = ("within_10pct", "within_10pct_ci95", "within_5pct", "mape", "bias")
    return {"references": start["references"], "factor": factor, "factor_vs_eval": factor / res["speed_factor"],
            "t_timed_ms": start["also_ms"][0], "t_frame_ms": t_frame, "seconds": start["seconds"],
            "ms_shown": {k: ms[k] for k in keep}, "lat_over_t": {k: ratio[k] for k in keep}}


def run_table(path: Path, samples: int, first_all: bool, seed: int, target_name: str) -> dict[str, Any]:
    table = LatencyTable.load(path)
    _, target, _ = resolve_target(table, target_name)
    if target is None:
        raise MnasError(f"--target {target_name!r}: give a model (a zoo name or an architecture), not a figure")
    n_all = len((table.calibration or {}).get("samples", []))
    starts: dict[str, Any] = {}
    for name, n in (("all", n_all), ("default", REFERENCES)) if first_all else (("default", REFERENCES), ("all", n_all)):
        t0 = time.perf_counter()
        starts[name] = {**time_references(table, n=n, also=[target]), "seconds": time.perf_counter() - t0}
        print(f"{path.name}: start timing with {starts[name]['references']} references: factor "
              f"{starts[name]['factor']:.3f}, T {starts[name]['also_ms'][0]:.3f} ms, "
              f"{starts[name]['seconds']:.0f} s", flush=True)
    t0 = time.perf_counter()
    res = evaluate(table, samples, seed=seed, target=target.canonical, search_view=False)
    out = {"table": str(path), "seed": seed, "first": "all" if first_all else "default",
           "eval_factor": res["speed_factor"], "eval_seconds": time.perf_counter() - t0,
           "load_average": res["load_average"], "t_by_chunk": res["near_target"]["target_by_chunk"],
           "ratio_t_predicted": {k: res["views"]["ratio"][k] for k in ("within_10pct", "within_10pct_ci95",
                                                                        "mape", "bias")},
           "starts": {name: judge(res, st) for name, st in starts.items()}}
    for name, j in out["starts"].items():
        print(f"{path.name} [{name}, {j['references']} refs]: factor/eval {j['factor_vs_eval']:.3f}; ms shown "
              f"{j['ms_shown']['within_10pct']:.1%}, LAT/T T timed {j['lat_over_t']['within_10pct']:.1%} within "
              "±10 %", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = table_args(__doc__)
    ap.add_argument("--target", default="auto", help="T's model (default: MnasNet-A1, as lut_honest.py)")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    lock = DirectoryLock(args.dir, "lut_start_factor.lock", "one lut_start_factor run per directory")
    try:
        path = args.dir / "results.json"
        results = json.loads(path.read_text()) if path.exists() else {"tables": {}, "seeds": {}}
        for i, table in enumerate(args.tables):
            key = str(table)
            if key in results["tables"]:
                print(f"{table}: done before, kept", flush=True)
                continue
            seed = results["seeds"].setdefault(key, fresh_seed())
            atomic_write(path, json.dumps(results, indent=1))
            print(f"{table}: eval seed {seed} (drawn at run time)", flush=True)
            results["tables"][key] = run_table(table, args.samples, first_all=i % 2 == 0, seed=seed,
                                                  target_name=args.target)
            atomic_write(path, json.dumps(results, indent=1))
    finally:
        lock.release()
    return 0


if __name__ == "__main__":
    script(main)
