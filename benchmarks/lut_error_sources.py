"""What explains a table's errors? Noisy entries, or the network's size (issue 32).

    python benchmarks/lut_error_sources.py runs/lut-int8

For each eval of a ``lut_honest.py`` folder: each network's share of its predicted time that comes from
entries flagged noisy, against its error (the rescaled prediction, the machine's drift taken out, against
the measurement): the Spearman correlation, and the networks within ±10 % in the half with fewer noisy
entries against the other half. Then the signed error against the measured milliseconds: a calibration
whose slope or intercept is off predicts the small networks and the large ones wrong in opposite directions.
Reads the stored results only (no timing).
"""

from __future__ import annotations

import json
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


if __name__ == "__main__":
    main()
