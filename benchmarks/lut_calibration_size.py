"""A table's calibration on all its calibration networks against the first ``--subset`` of them, judged on
the same eval networks (issue 32; protocol: docs/results/2026-12-07-lut-calibration-size.md).

    python benchmarks/lut_honest.py --dir runs/lut-cal120 --backends onnxruntime --calibrate 120 --no-estimate
    python benchmarks/lut_calibration_size.py runs/lut-cal120 --subset 40

For each eval of a ``lut_honest.py`` folder: the table's entries with its stored calibration (fitted on every
calibration network) and refitted by least squares on the first ``--subset`` of the same networks (the same
features and ``se_big`` threshold); each prediction scaled by the one factor that makes its median ratio to
the measurements 1, so only the table's shape is judged. Prints, per fit: networks within ±10 % and ±5 %,
Kendall tau, and the Spearman correlation of the signed error with the measured time. Reads stored results
only (no timing).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from mnas.latency.lut import LatencyTable
from mnas.space import Architecture


def judge(pred: list[float], measured: list[float]) -> dict:
    k = statistics.median(m / p for p, m in zip(pred, measured))
    signed = [p * k / m - 1 for p, m in zip(pred, measured)]
    return {"within_10": sum(abs(e) <= 0.10 for e in signed), "within_5": sum(abs(e) <= 0.05 for e in signed),
            "tau": kendalltau(pred, measured)[0], "size_trend": spearmanr(signed, measured)[0],
            "mape": statistics.fmean(abs(e) for e in signed), "n": len(signed)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--subset", type=int, default=40)
    args = ap.parse_args()
    evals = json.loads((args.dir / "results.json").read_text())["evals"]
    for key, ev in evals.items():
        table = LatencyTable.load(args.dir / ev["table"])
        cal = table.calibration
        names, samples = cal["features"], cal["samples"]
        if len(samples) <= args.subset:
            raise SystemExit(f"{key}: {len(samples)} calibration networks, not more than --subset {args.subset}")
        sub = samples[:args.subset]
        coef_sub, *_ = np.linalg.lstsq(np.array([[s[n] for n in names] for s in sub]),
                                       np.array([s["measured_ms"] for s in sub]), rcond=None)
        measured, full, part = [], [], []
        for s in ev["samples"]:
            f = table.features(Architecture.parse(s["arch"]))
            measured.append(s["measured_ms"])
            full.append(sum(c * f[n] for n, c in zip(names, cal["coef"])))
            part.append(sum(c * f[n] for n, c in zip(names, coef_sub)))
        print(f"{key} ({ev['n']} eval networks, eval seed {ev['seed']}; calibration applied: "
              f"{cal.get('applied', True)})", flush=True)
        for label, coef, pred in ((f"all {len(samples)}", cal["coef"], full),
                                  (f"first {args.subset}", coef_sub, part)):
            j = judge(pred, measured)
            print(f"  fit on {label:>9}: coef {dict(zip(names, (round(float(c), 3) for c in coef)))}; within ±10 % "
                  f"{j['within_10']}/{j['n']}, ±5 % {j['within_5']}/{j['n']}, tau {j['tau']:.3f}, MAPE "
                  f"{100 * j['mape']:.1f} %, Spearman(signed error, ms) {j['size_trend']:.2f}", flush=True)


if __name__ == "__main__":
    main()
