"""The retrained models of an experiment as a Markdown table (docs/results/2026-11-27-cifar10-search.md), from what
`mnas report EXPERIMENT --json` computes: model, params, MACs, every latency timing kept (`mnas retrain --remeasure`)
with the load beside it, test top-1, epochs; then each searched model against the reference curve, and tau.

    python benchmarks/results_table.py runs/cifar10
"""

from __future__ import annotations

import sys

from mnas.report.build import make_report


def main(run: str) -> None:
    s = make_report(run, plots=False, html=False)
    r = s.get("retrained") or {}
    print("| model | kind | params (M) | MACs at 224 px (M) | latency ms (each timing; load) | test top-1 | epochs |")
    print("|---|---|---|---|---|---|---|")
    for row in r.get("rows", []):
        runs = (row.get("data") or {}).get("latency_runs") or []
        timings = "; ".join(f"{t['latency_ms']:.2f} ({t['load'][0]:.1f})" for t in runs) or \
            (f"{row['latency_ms']:.2f} (at training)" if row.get("latency_ms") else "")
        top1 = f"{100 * row['top1']:.2f} %" if row.get("top1") is not None else row["status"]
        print(f"| {row['label']} | {row['kind']} | {(row.get('params') or 0) / 1e6:.2f} | "
              f"{(row.get('macs') or 0) / 1e6:.0f} | {timings} | {top1} | {row.get('epochs') or ''} |")
    for c in r.get("comparisons", []):
        print(f"\n{c}")
    print(f"\ngoal: {r.get('goal')}")
    print(f"proxy fidelity: {r.get('proxy_fidelity')}")


if __name__ == "__main__":
    main(sys.argv[1])
