"""How well can anything order the networks near T: the table, a search's own side-by-side timing, or a
second timing of the same networks? (issue 32)

    python benchmarks/lut_near_t.py TABLE.json [TABLE.json ...] --dir DIR [--samples 200] [--runs N]

For each table, ``lut eval`` on ``--samples`` networks of a seed drawn now (kept for a resumed run), T's model
(MnasNet-A1) timed in every chunk of rounds: pass A, each network's measured LAT/T. The networks whose LAT/T
in A lies within ±``--wide`` of 1 are then timed twice more:

- ``direct``: each one beside T's model as a search trial on a measuring backend times it
  (``relative.measure_relative``, the table's settings): the LAT/T such a search records;
- pass B: all of them again as the eval times them (``evaluate.retime``: interleaved rounds, T's model in
  every chunk), in an order shuffled with the eval seed.

The truth they are judged on is the mean of A and B; the pairs are those whose two networks both lie within
±10 % of 1 on it (``NEAR_T``). Order accuracy over these pairs for: A, the table's LAT/T (T predicted, what
a search's reward reads on ``lut:PATH``) and ``direct``, each against B alone (three estimates independent
of B, so A against B says how often two timings of the same networks agree); the table and ``direct``
against the truth; and the table against A alone over the pairs A picks (as ``lut eval`` judges it). Each
also by the pair's gap in the truth (below 2 %, 2-5 %, at least 5 %). DIR/results.json is written after each
step; rerun the command to resume. ``--runs N``: every timing of the run (the eval's, direct, pass B) takes N
timed runs per network instead of the table's (30), to see whether a longer timing reproduces better.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.latency import relative
from mnas.latency.lut import LatencyTable, evaluate
from mnas.latency.lut.evaluate import NEAR_T, load_average, order_agreement, pairs_near, resolve_target, retime
from mnas.latency.registry import get_backend
from mnas.space import Architecture
from table_runs import per_table, script, table_args

GAPS = ((0.0, 0.02), (0.02, 0.05), (0.05, float("inf")))  # a pair's gap in the truth, |a - b| / mean


def order(est: list[float], ref: list[float], pairs: list[tuple[int, int]], gap: list[float] | None = None
          ) -> dict[str, Any]:
    """How often ``est`` orders the ``pairs`` as ``ref`` does (a tie counts half), in all and by the pair's
    gap in ``gap`` (default ``ref``)."""
    gap = ref if gap is None else gap
    out: dict[str, Any] = {"pairs": len(pairs), "order_accuracy": order_agreement(est, ref, pairs), "by_gap": {}}
    for lo, hi in GAPS:
        ps = [(i, j) for i, j in pairs if lo <= abs(gap[i] - gap[j]) / ((gap[i] + gap[j]) / 2) < hi]
        out["by_gap"][f"{lo:.0%}-{hi:.0%}" if hi < 1 else f">={lo:.0%}"] = {
            "pairs": len(ps), "order_accuracy": order_agreement(est, ref, ps)}
    return out


def direct(table: LatencyTable, target: Architecture, archs: list[Architecture]) -> dict[str, Any]:
    """Each of ``archs`` timed beside T's model as a search trial on the table's backend times it."""
    be = get_backend(table.backend)
    t0, load = time.perf_counter(), load_average()
    ratios, how = [], set()
    for a in archs:
        r = relative.measure_relative(a, target, be, table.settings, spec=table.backend)
        ratios.append(r.extra["relative"]["ratio"])
        how.add(r.extra["relative"]["ratio_from"])
    return {"ratio": ratios, "ratio_from": sorted(how), "seconds": time.perf_counter() - t0,
            "load": {"start": load, "end": load_average()}}


def judge(rec: dict[str, Any]) -> dict[str, Any]:
    """The order accuracies of one table's record (see the module's docstring)."""
    a, b = rec["a"], rec["b"]["ratio"]
    table, dr = rec["table_ratio"], rec["direct"]["ratio"]
    truth = [(x + y) / 2 for x, y in zip(a, b)]
    pairs = pairs_near(truth, 1.0, NEAR_T)
    pairs_a = pairs_near(a, 1.0, NEAR_T)  # as lut eval picks them (among the networks kept for the passes)
    return {"networks_near": len({i for p in pairs for i in p}), "table_vs_a": order(table, a, pairs_a),
            **{f"{name}_vs_b": order(est, b, pairs, truth) for name, est in (("a", a), ("table", table),
                                                                              ("direct", dr))},
            "table_vs_truth": order(table, truth, pairs), "direct_vs_truth": order(dr, truth, pairs)}


def run_table(path: Path, samples: int, seed: int, wide: float, rec: dict[str, Any], save,
              runs: int | None = None) -> dict[str, Any]:
    table = LatencyTable.load(path)
    if runs is not None:
        table.settings = table.settings.replace(runs=runs)  # in memory only: the table file is never written
    if rec.setdefault("runs", table.settings.runs) != table.settings.runs:
        raise MnasError(f"{path}: this DIR's results timed {rec['runs']} runs per network; resume it with "
                        f"--runs {rec['runs']} or use another --dir")
    _, target, _ = resolve_target(table, "auto")
    if "eval" not in rec:
        t0 = time.perf_counter()
        res = evaluate(table, samples, seed=seed, target=target.canonical, search_view=False,
                       retime_near=False)  # pass B is this benchmark's own second timing
        keep = [i for i, s in enumerate(res["samples"]) if abs(s["measured_ratio"] - 1.0) <= wide]
        pred_t = res["views"]["ratio"]["target_predicted_ms"]
        rec["eval"] = {"seconds": time.perf_counter() - t0, "load_average": res["load_average"],
                       "near_target": {k: v for k, v in res["near_target"].items() if k != "target_timings"},
                       "ratio_view": {k: res["views"]["ratio"][k] for k in ("within_10pct", "kendall_tau", "mape")},
                       "target_predicted_ms": pred_t}
        rec["archs"] = [res["samples"][i]["arch"] for i in keep]
        rec["a"] = [res["samples"][i]["measured_ratio"] for i in keep]
        rec["table_ratio"] = [res["samples"][i]["unscaled_ms"] / pred_t for i in keep]
        save()
        acc = res["near_target"]["order_accuracy"]
        print(f"{path.name}: pass A done, {len(keep)} of {samples} networks within ±{wide:.0%} of T; lut eval's "
              f"order near T {'-' if acc is None else f'{acc:.1%}'}", flush=True)
    archs = [Architecture.parse(a) for a in rec["archs"]]
    if "direct" not in rec:
        rec["direct"] = direct(table, target, archs)
        save()
        print(f"{path.name}: direct timings done in {rec['direct']['seconds']:.0f} s", flush=True)
    if "b" not in rec:
        rec["b"] = retime(table, target, archs, seed)
        save()
        print(f"{path.name}: pass B done in {rec['b']['seconds']:.0f} s", flush=True)
    rec["judged"] = judge(rec)
    save()
    return rec


def show(name: str, j: dict[str, Any]) -> None:
    print(f"\n{name}: {j['networks_near']} networks near T")
    cols = list(j["a_vs_b"]["by_gap"])
    print(f"| {'estimate vs truth':<22} | {'pairs':>5} | {'order':>6} | " + " | ".join(f"{c:>13}" for c in cols) + " |")
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    for key in ("table_vs_a", "a_vs_b", "table_vs_b", "direct_vs_b", "table_vs_truth", "direct_vs_truth"):
        o = j[key]
        cells = [f"{pct(g['order_accuracy'])} ({g['pairs']})" for g in o["by_gap"].values()]
        print(f"| {key:<22} | {o['pairs']:>5} | {pct(o['order_accuracy']):>6} | "
              + " | ".join(f"{c:>13}" for c in cells) + " |")


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1, e.g. 90")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    ap = table_args(__doc__)
    ap.add_argument("--wide", type=float, default=0.15, help="networks kept for the passes: pass A's LAT/T "
                    "within this fraction of 1 (wider than the ±10 %% of the pairs, which the truth picks)")
    ap.add_argument("--runs", type=positive, default=None, help="timed runs per network in every timing "
                    "(default: the table's, 30)")
    args = ap.parse_args(argv)

    def run(table: Path, seed: int, rec: dict[str, Any], save) -> None:
        run_table(table, args.samples, seed, args.wide, rec, save, args.runs)

    return per_table(args.dir, "lut_near_t", args.tables, lambda rec: "judged" in rec, run,
                     lambda table, rec: show(table.name, rec["judged"]))


if __name__ == "__main__":
    script(main)
