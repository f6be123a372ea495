"""Does a layer-count term in a table's calibration help, chosen on the calibration networks alone? (issue 32)

    python benchmarks/lut_features.py TABLE.json [TABLE.json ...] --dir DIR [--samples 200]

For each table, three calibrations fitted on the table's own calibration networks (their stored timings;
the ``se_big`` threshold the build chose): ``current`` (the build's features: sum, se_big, const),
``layers`` (the same plus the number of layers) and ``selected`` (whichever of the two has the lower
leave-one-out error on the calibration networks: what a build would do if it chose its features the way it
chooses the ``se_big`` threshold). Then ``lut eval`` on ``--samples`` networks of a seed drawn now (kept for
a resumed run), T = MnasNet-A1 timed in every chunk; each calibration's LAT/T with T predicted (T's missing
layers measured once, in memory) is judged on the same measured LAT/T: within ±10 % with Clopper-Pearson
bounds, tau, order near T. Reads and times; never writes the table. DIR/results.json after each table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.latency.lut import LatencyTable, evaluate
from mnas.latency.lut.build import measure_missing
from mnas.latency.lut.evaluate import metrics, pairwise_near, resolve_target
from mnas.space import Architecture
from table_runs import per_table, script, table_args

VARIANTS = {"current": ("sum_ms", "se_big_ms", "const"), "layers": ("sum_ms", "se_big_ms", "layers", "const")}


def fit(table: LatencyTable, features: tuple[str, ...]) -> dict[str, Any]:
    """Least squares on the calibration networks' stored timings, and its leave-one-out MAPE."""
    import numpy as np

    cal = table.calibration or {}
    samples = cal.get("samples", [])
    if len(samples) <= len(features):
        raise MnasError(f"{table.path}: {len(samples)} calibration networks cannot fit {len(features)} features")
    feats = [table.features(Architecture.parse(s["arch"])) for s in samples]
    x = np.array([[f[k] for k in features] for f in feats], dtype=float)
    y = np.array([s["measured_ms"] for s in samples], dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    loo = np.array([x[i] @ np.linalg.lstsq(np.delete(x, i, 0), np.delete(y, i), rcond=None)[0]
                    for i in range(len(y))])
    return {"features": list(features), "coef": [float(c) for c in coef],
            "loo_mape": float(np.mean(np.abs(loo - y) / y))}


def run_table(path: Path, samples: int, seed: int) -> dict[str, Any]:
    table = LatencyTable.load(path)
    _, target, _ = resolve_target(table, "auto")
    fits = {name: fit(table, fs) for name, fs in VARIANTS.items()}
    fits["selected"] = dict(min((fits["current"], fits["layers"]), key=lambda f: f["loo_mape"]))
    res = evaluate(table, samples, seed=seed, target=target.canonical, search_view=False, retime_near=False)
    truth = [s["measured_ratio"] for s in res["samples"]]
    archs = [Architecture.parse(s["arch"]) for s in res["samples"]]
    table.entries = {**table.entries, **measure_missing(table, table.missing(target))}  # in memory only
    out: dict[str, Any] = {"seed": seed, "load_average": res["load_average"],
                           "eval_ratio_view": {k: res["views"]["ratio"][k] for k in ("within_10pct", "kendall_tau")},
                           "variants": {}}
    for name, f in fits.items():
        table.calibration = {**table.calibration, "features": f["features"], "coef": f["coef"], "applied": True}
        pred = [table.predict(a, check_space=False) for a in archs]
        pred_t = table.predict(target, check_space=False)
        ratio = [p / pred_t for p in pred]
        m = metrics(ratio, truth)
        out["variants"][name] = {**f, "target_predicted_ms": pred_t,
                                 **{k: m[k] for k in ("within_10pct", "within_10pct_ci95", "within_5pct", "kendall_tau",
                                                      "mape", "bias")},
                                 "order_near_t": pairwise_near(ratio, truth, 1.0)["order_accuracy"]}
    return out


def show(name: str, rec: dict[str, Any]) -> None:
    print(f"\n{name}: eval seed {rec['seed']}")
    print("| calibration | features | LOO MAPE (calibration) | ±10 % LAT/T [95 % CI] | ±5 % | tau | order near T |")
    print("|---|---|---|---|---|---|---|")
    for v, r in rec["variants"].items():
        lo, hi = r["within_10pct_ci95"]
        print(f"| {v} | {'+'.join(r['features'])} | {r['loo_mape']:.2%} | {r['within_10pct']:.1%} [{lo:.1%}, {hi:.1%}] "
              f"| {r['within_5pct']:.1%} | {r['kendall_tau']:.3f} | "
              f"{'-' if r['order_near_t'] is None else format(r['order_near_t'], '.1%')} |")


def main(argv: list[str] | None = None) -> int:
    ap = table_args(__doc__)
    args = ap.parse_args(argv)

    def run(table: Path, seed: int, rec: dict[str, Any], save) -> None:
        rec.update(run_table(table, args.samples, seed))

    return per_table(args.dir, "lut_features", args.tables, lambda rec: "variants" in rec, run,
                     lambda table, rec: show(table.name, rec))


if __name__ == "__main__":
    script(main)
