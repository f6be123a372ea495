"""PNG plots of a search (matplotlib Agg, whole-array calls only, so 10,000 trials plot in well under a second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnas.report.pareto import pareto_front
from mnas.store.query import TrialTable

PLOT_NAMES = {"reward": "reward.png", "pareto": "pareto.png", "latency_hist": "latency_hist.png",
              "entropy": "entropy.png"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start), via cumulative sums."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    c = np.concatenate(([0.0], np.cumsum(values)))
    n = np.arange(1, values.size + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


def window_for(n: int) -> int:
    return int(max(5, min(200, n // 20)))


def _dots(n: int) -> dict:
    """Marker size and opacity: faint specks for thousands of trials, visible dots for a handful."""
    return {"s": 6, "alpha": 0.35} if n > 1000 else ({"s": 12, "alpha": 0.6} if n > 100 else {"s": 25, "alpha": 0.85})


def plot_reward(table: TrialTable, path: Path, title: str = "") -> Path:
    plt = _plt()
    done = np.flatnonzero(table.completed & np.isfinite(table.reward))
    fig, ax = _figure(plt)
    if done.size:
        x, y = np.arange(1, done.size + 1), table.reward[done]
        w = window_for(done.size)
        ax.scatter(x, y, lw=0, label="reward of each trial", **_dots(done.size))
        ax.plot(x, moving_average(y, w), color="C3", lw=2, label=f"moving average ({w} trials)")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("completed trial")
    ax.set_ylabel("reward  ACC·(LAT/T)^w")
    ax.set_title(title or "Reward over the search")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pareto(table: TrialTable, path: Path, target_ms: float | None, title: str = "") -> Path:
    plt = _plt()
    done = np.flatnonzero(table.completed)
    fig, ax = _figure(plt, right=0.98, height=4.5)
    if done.size:
        lat, acc = table.latency_ms[done], table.accuracy[done]
        sc = ax.scatter(lat, acc, c=np.arange(done.size), cmap="viridis", lw=0, **_dots(done.size))
        fig.colorbar(sc, ax=ax, label="trial (order sampled)")
        front = pareto_front(lat, acc)
        ax.step(lat[front], acc[front], where="post", color="C3", lw=1.5)
        ax.scatter(lat[front], acc[front], s=30, facecolors="none", edgecolors="C3",
                   label=f"Pareto front ({front.size})")
    else:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", transform=ax.transAxes)
    if target_ms:
        ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target T = {target_ms:.4g} ms")
    if done.size or target_ms:
        ax.legend(loc="lower right")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy (proxy)")
    ax.set_title(title or "Accuracy against latency")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_latency_hist(runs: list[tuple[str, TrialTable]], path: Path, target_ms: float | None,
                      title: str = "") -> Path:
    """Histogram of the sampled models' latencies; several runs overlaid (the paper's Fig. 6)."""
    plt = _plt()
    fig, ax = _figure(plt)
    lats = [t.latency_ms[np.isfinite(t.latency_ms)] for _, t in runs]
    allv = np.concatenate(lats) if lats else np.zeros(0)
    if allv.size:
        bins = np.histogram_bin_edges(allv, bins=min(60, max(10, int(np.sqrt(allv.size)))))
        for (label, _), lat in zip(runs, lats):
            ax.hist(lat, bins=bins, alpha=0.55 if len(runs) > 1 else 0.85, label=f"{label} ({lat.size})")
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no measured latencies yet", ha="center", transform=ax.transAxes)
    if target_ms:
        ax.axvline(target_ms, color="k", ls="--", lw=1)
        ax.text(target_ms, ax.get_ylim()[1] * 0.95, f" T={target_ms:.4g} ms", va="top")
    ax.set_xlabel("latency of sampled model (ms)")
    ax.set_ylabel("models")
    ax.set_title(title or "Latencies of the sampled models")
    return _save(fig, path)


def token_entropy(tokens: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-decision entropy (nats) of the choices sampled in consecutive windows of trials: how
    concentrated the sampler has become, for strategies that report no policy entropy themselves."""
    n, d = tokens.shape if tokens.ndim == 2 else (0, 0)
    w = n // window
    if w == 0 or d == 0:
        return np.zeros(0), np.zeros(0)
    t = np.clip(tokens[: w * window], 0, None)
    c = int(t.max()) + 1
    win = np.repeat(np.arange(w), window)[:, None]
    idx = (win * d + np.arange(d)[None, :]) * c + t
    counts = np.bincount(idx.ravel(), minlength=w * d * c).reshape(w, d, c).astype(np.float64)
    p = counts / window
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=2).mean(axis=1)
    return (np.arange(w) + 1) * window, h


def plot_entropy(diagnostics: list[dict[str, Any]], tokens: np.ndarray, path: Path, title: str = "") -> Path:
    plt = _plt()
    fig, ax = _figure(plt, right=0.88 if diagnostics else 0.97, left=0.15)
    pts = [(d["trials_told"], d["entropy"]) for d in diagnostics
           if isinstance(d.get("entropy"), (int, float)) and d.get("trials_told") is not None]
    handles = []
    if pts:
        x, y = np.array(pts, dtype=np.float64).T
        handles += ax.plot(x, y, marker="o" if len(pts) < 50 else None, ms=3,
                           label="controller policy entropy (nats, left)")
    n = len(tokens)
    window = window_for(n) if n >= 100 else max(1, min(n, max(2, n // 5)))
    xs, hs = token_entropy(tokens, window)
    if xs.size:
        # per-decision entropy of what was actually sampled; its own scale, so its own axis
        ax2 = ax.twinx() if pts else ax
        handles += ax2.plot(xs, hs, color="C1", ls="--", marker="." if xs.size < 50 else None,
                            label=f"entropy of sampled choices per decision (nats{', right' if pts else ''}; "
                                  f"windows of {window})")
        if pts:
            ax2.set_ylabel("sampled-choice entropy per decision (nats)")
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no entropy recorded", ha="center", transform=ax.transAxes)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("trials told to the controller")
    ax.set_ylabel("entropy (nats)")
    ax.set_title(title or "Controller entropy over time")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _figure(plt, right: float = 0.97, height: float = 4.0, left: float = 0.11):
    fig, ax = plt.subplots(figsize=(7, height))
    fig.subplots_adjust(left=left, right=right, bottom=0.13, top=0.91)
    return fig, ax


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed margins: tight_layout would render the whole figure once more just to measure the labels
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(out_dir: Path, table: TrialTable, target_ms: float | None, diagnostics: list[dict[str, Any]],
                tokens: np.ndarray, label: str = "this run",
                compare: list[tuple[str, TrialTable]] | None = None) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {
        "reward": plot_reward(table, out_dir / PLOT_NAMES["reward"]),
        "pareto": plot_pareto(table, out_dir / PLOT_NAMES["pareto"], target_ms),
        "latency_hist": plot_latency_hist([(label, table), *(compare or [])],
                                          out_dir / PLOT_NAMES["latency_hist"], target_ms,
                                          "Latencies of the sampled models" + (" (compared)" if compare else "")),
        "entropy": plot_entropy(diagnostics, tokens, out_dir / PLOT_NAMES["entropy"]),
    }
    return paths
