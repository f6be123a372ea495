"""What explains a table's errors? Noisy entries, or the network's size (issue 32).

    python benchmarks/lut_error_sources.py runs/lut-int8

For each eval of a ``lut_honest.py`` folder: each network's share of its predicted time that comes from
entries flagged noisy, against its error (the rescaled prediction, the machine's drift taken out, against
the measurement): the Spearman correlation, and the networks within ±10 % in the half with fewer noisy
entries against the other half. Then the signed error against the measured milliseconds: a calibration
whose slope or intercept is off predicts the small networks and the large ones wrong in opposite directions.
Last, where the eval has a LAT/T view: the error of LAT/T with T predicted (log of prediction over
measurement, less the eval's median) against the network's layer counts (all layers, MBConv, expansion 6,
plain conv, SE), Spearman, * for p < 0.01. Reads the stored results only (no timing).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

from scipy.stats import spearmanr

from mnas.latency.lut import arch_layers
from mnas.space import Architecture


def main() -> None:
    folder = Path(sys.argv[1])
    evals = json.loads((folder / "results.json").read_text())["evals"]
    for key, ev in evals.items():
        table = json.loads((folder / ev["table"]).read_text())
        entries, res = table["entries"], ev["resolution"]
        share, err, signed, ms = [], [], [], []
        for s in ev["samples"]:
            specs = arch_layers(Architecture.parse(s["arch"]), res)
            total = sum(entries[x.key]["ms"] for x in specs)
            share.append(sum(entries[x.key]["ms"] for x in specs if entries[x.key]["noisy"]) / total)
            signed.append(s["predicted_ms"] / s["measured_ms"] - 1)  # rescaled: the drift taken out
            err.append(abs(signed[-1]))
            ms.append(s["measured_ms"])
        rho, p = spearmanr(share, err)
        mid = statistics.median(share)
        lo = [e for sh, e in zip(share, err) if sh <= mid]
        hi = [e for sh, e in zip(share, err) if sh > mid]
        print(f"{key}: noisy share of the predicted ms, median {mid:.2f}; Spearman(share, |error|) {rho:.2f} "
              f"(p {p:.3f}); within ±10 % rescaled: fewer-noisy half {sum(e <= 0.1 for e in lo)}/{len(lo)}, "
              f"more-noisy half {sum(e <= 0.1 for e in hi)}/{len(hi)}; median |error| {statistics.median(lo):.3f} "
              f"against {statistics.median(hi):.3f}", flush=True)
        rho, p = spearmanr(signed, ms)
        cal = table.get("calibration") or {}
        coef = dict(zip(cal.get("features", []), (round(c, 3) for c in cal.get("coef", []))))
        print(f"{key}: Spearman(signed error, measured ms) {rho:.2f} (p {p:.2g}); calibration {coef}", flush=True)
        ratio = (ev.get("views") or {}).get("ratio")
        if ratio and all("measured_ratio" in s for s in ev["samples"]):
            print(f"{key}: LAT/T error against layer counts: {by_layers(ev['samples'], ratio['target_predicted_ms'])}",
                  flush=True)


def by_layers(samples: list[dict], pred_t: float) -> str:
    """Spearman of each network's LAT/T error (T predicted) against how many of its layers are of a kind."""
    err = [math.log(s["unscaled_ms"] / pred_t / s["measured_ratio"]) for s in samples]
    mid = statistics.median(err)
    err = [e - mid for e in err]
    kinds = {"layers": lambda b: True, "ir": lambda b: b.op == "ir", "e6": lambda b: b.expansion == 6,
             "cv": lambda b: b.op == "cv", "se": lambda b: b.se > 0}
    blocks = [Architecture.parse(s["arch"]).blocks for s in samples]
    out = []
    for name, pick in kinds.items():
        rho, p = spearmanr([sum(b.repeats for b in bs if pick(b)) for bs in blocks], err)
        out.append(f"{name} {rho:+.2f}{'*' if p < 0.01 else ''}")
    return ", ".join(out)


if __name__ == "__main__":
    main()
