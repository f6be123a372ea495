"""The paper's Figure 6 on the NAS-Bench-201 table: PPO with the hard reward (alpha 0, beta -1) and with the
soft one (alpha = beta = -0.07); for each, the sampled models' accuracy against latency with their Pareto
front, and the histogram of their latencies, T marked.

    nice -n 10 python benchmarks/fig6.py [--samples 3000] [--seeds 3] [--out docs/img/fig6-nb201.png]

Each search asks the paper's controller (PPO's ``paper`` settings profile: NASNet's LSTM, lr 0.00035, 20 models per
update) for ``samples`` models, as the paper plots 3000 sampled models per search, and tells each its
reward; a repeated architecture is told its result again, as the real loop tells its cached result. T is
the table's median latency, so half the table lies on each side of it, as MobileNetV2-like 75 ms sits
inside the paper's range. The figure shows seed 0; for every seed the script prints where the sampled
latencies lie against T, over all samples and over the last third (after the controller has learned).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mnas.search.bench.table import load_table
from mnas.search.pareto import pareto_front
from mnas.search.reward import RewardConfig, reward
from mnas.search.strategies import make_strategy

TABLE = Path(__file__).with_name("data") / "nb201_cifar10_pixel3.csv.gz"
PRESETS = {"hard": "hard constraint: alpha = 0, beta = -1", "soft": "soft constraint: alpha = beta = -0.07"}


def search(table, preset: str, target_ms: float, seed: int, samples: int) -> np.ndarray:
    """Table rows of the sampled models, in order (architectures the table lacks are told a failure)."""
    cfg = RewardConfig.from_preset(preset, target_ms=target_ms)
    ppo = make_strategy("ppo-paper", table.space, seed=seed)
    rows = []
    for _ in range(samples):
        tokens = ppo.ask()
        row = table.lookup(tokens)
        if row is None:
            ppo.tell(tokens, None)
            continue
        acc, lat = float(table.accuracy[row]), float(table.latency[row])
        ppo.tell(tokens, reward(acc, lat, cfg), {"accuracy": acc, "latency_ms": lat})
        rows.append(row)
    return np.array(rows)


def summary(lat: np.ndarray, target_ms: float) -> str:
    q1, med, q3 = np.percentile(lat, [25, 50, 75]) / target_ms
    return f"<= T {np.mean(lat <= target_ms):4.0%}, median {med:.2f} T, quartiles {q1:.2f}-{q3:.2f} T"


def plot(table, runs: dict[str, np.ndarray], target_ms: float, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True, sharey="row",
                             gridspec_kw={"height_ratios": [3, 2]})
    bins = np.linspace(0, float(table.latency.max()), 61)
    for col, (preset, rows) in enumerate(runs.items()):
        lat, acc = table.latency[rows], table.accuracy[rows] * 100
        top, bottom = axes[0, col], axes[1, col]
        top.scatter(lat, acc, s=4, lw=0, alpha=0.3, color="C2", rasterized=True, label=f"{len(rows)} sampled")
        front = pareto_front(lat, acc)
        top.step(lat[front], acc[front], where="post", color="C0", lw=1.5, label="Pareto front")
        top.set_ylim(80, 95)
        top.set_title(f"({'ab'[col]}) {PRESETS[preset]}", fontsize=10)
        bottom.hist(lat, bins=bins, color="C0")
        for ax in (top, bottom):
            ax.axvline(target_ms, color="k", ls="--", lw=1)
            ax.grid(alpha=0.3)
        top.text(target_ms, 80.5, f" T = {target_ms:.1f} ms", fontsize=9)
        top.legend(loc="lower right", fontsize=8)
        bottom.set_xlabel("Pixel 3 latency (ms)")
    axes[0, 0].set_ylabel("CIFAR-10 accuracy (%)")
    axes[1, 0].set_ylabel("sampled models")
    fig.suptitle("Figure 6 on NAS-Bench-201: PPO's sampled models under each reward", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("docs/img/fig6-nb201.png"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)  # PPO's small updates only contend with more threads
    table = load_table(TABLE)
    target_ms = float(np.median(table.latency))
    print(f"T = {target_ms:.2f} ms (the table's median latency); {args.samples} samples a search")
    shown = {}
    for preset in PRESETS:
        for seed in range(args.seeds):
            rows = search(table, preset, target_ms, seed, args.samples)
            lat = table.latency[rows]
            print(f"{preset} seed {seed}: all: {summary(lat, target_ms)} | last third: "
                  f"{summary(lat[-len(lat) // 3:], target_ms)}", flush=True)
            shown.setdefault(preset, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(table, shown, target_ms, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
