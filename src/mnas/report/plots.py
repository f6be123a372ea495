"""Plots of a search (matplotlib Agg, whole-array calls only, so 10,000 trials plot in well under a second).

Each plot is written as PNG (print resolution) and, with ``formats``, also as SVG and PDF for slides and
papers. Accuracy is shown in %, points are labelled with the trial ids the tables use (where a label would
cover another, it is left out), counts and trial ids get integer ticks, legends sit below the axes (never
over the points), and a line under each figure says what to read on it (``READ``).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from mnas.fileio import atomic_write
from mnas.report.pareto import pareto_front
from mnas.store.query import TrialTable

PLOT_NAMES = {"reward": "reward.png", "pareto": "pareto.png", "latency_hist": "latency_hist.png",
              "entropy": "entropy.png"}

# What to read on each figure: its caption, drawn under it.
READ = {
    "reward": "Each dot is one trial's reward, in the order the trials were started. The red moving average rises "
              "when the search learns (a random search stays flat); the black steps are the best reward so far.",
    "pareto": "Each dot is a trial (colour: when it was sampled, late = yellow). The red staircase is the Pareto "
              "front: no trial is both faster and more accurate than a point on it. Labels are trial ids "
              "(mnas report, mnas export --trial); left of the dashed line is faster than the target T.",
    "latency_hist": "How many sampled models had each latency. A soft reward spreads the samples around T; a hard "
                    "one piles them up just under it (compare runs with mnas report --compare).",
    "entropy": "The controller's policy entropy (left axis) and the entropy of the choices it sampled (right). "
               "Falling means the search concentrates on fewer architectures; at the dotted maximum it still "
               "samples uniformly.",
    "entropy_sampled": "The entropy of the choices the strategy sampled, per decision, in windows of trials (this "
                       "strategy has no controller policy to report). Falling means it concentrates on fewer "
                       "architectures; at the dotted maximum it samples uniformly.",
}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    # SVG text stays text: editable in a paper's figure, searchable, and checkable by the tests
    matplotlib.rcParams["svg.fonttype"] = "none"
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


def plot_reward(table: TrialTable, path: Path, title: str = "", formats: tuple[str, ...] = ()) -> Path:
    plt = _plt()
    done = np.flatnonzero(table.completed & np.isfinite(table.reward))
    fig, ax = _figure(plt)
    if done.size:
        x, y = table.id[done], table.reward[done]
        w = window_for(done.size)
        ax.scatter(x, y, lw=0, label="reward of each trial", **_dots(done.size))
        ax.plot(x, moving_average(y, w), color="C3", lw=2, label=f"moving average ({w} trials)")
        ax.step(x, np.maximum.accumulate(y), where="post", color="k", lw=1.2, label="best so far")
    else:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("trial id")
    ax.xaxis.set_major_locator(_integers())
    ax.set_ylabel("reward  ACC·(LAT/T)^w")
    ax.set_title(title or "Reward over the search")
    ax.grid(alpha=0.3)
    _finish(fig, ax, READ["reward"])
    return _save(fig, path, formats)


def plot_pareto(table: TrialTable, path: Path, target_ms: float | None, title: str = "",
                references: list[dict[str, Any]] | None = None, formats: tuple[str, ...] = ()) -> Path:
    """``references``: reference models timed on the search's backend ({"name", "latency_ms"} and, once
    trained on the same task, "accuracy"): with accuracies they are drawn as a curve, else as marks on the
    latency axis."""
    plt = _plt()
    done = np.flatnonzero(table.completed)
    fig, ax = _figure(plt, right=0.98, height=4.5)
    if done.size:
        # the figures the report's front table ranks by: re-timed where a trial was
        lat, acc = table.best_latency()[done], 100 * table.accuracy[done]
        sc = ax.scatter(lat, acc, c=table.id[done], cmap="viridis", lw=0, **_dots(done.size))
        fig.colorbar(sc, ax=ax, label="trial id", ticks=_integers())
        front = pareto_front(lat, acc)
        ax.step(lat[front], acc[front], where="post", color="C3", lw=1.5)
        ax.scatter(lat[front], acc[front], s=30, facecolors="none", edgecolors="C3",
                   label=f"Pareto front ({front.size})")
    else:
        ax.text(0.5, 0.5, "no completed trials yet", ha="center", transform=ax.transAxes)
    _draw_references(ax, references or [])
    if target_ms:
        ax.axvline(target_ms, color="k", ls="--", lw=1, label=f"target T = {target_ms:.4g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy (%, proxy task)")
    ax.set_title(title or "Accuracy against latency")
    ax.grid(alpha=0.3)
    if done.size:  # the ids the tables use, on the front points whose labels fit
        _label_points(ax, lat[front], acc[front], [str(table.id[done[i]]) for i in front], color="C3")
    _finish(fig, ax, READ["pareto"])
    return _save(fig, path, formats)


def _draw_references(ax, refs: list[dict[str, Any]]) -> None:
    with_acc = sorted((r for r in refs if r.get("accuracy") is not None), key=lambda r: r["latency_ms"])
    if with_acc:
        x = [r["latency_ms"] for r in with_acc]
        y = [100 * r["accuracy"] for r in with_acc]
        ax.plot(x, y, color="0.3", marker="s", ms=4, lw=1.2, label="reference models")
        for r, xi, yi in zip(with_acc, x, y):
            ax.annotate(r["name"], (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=7, color="0.3")
    for r in refs:
        if r.get("accuracy") is None:
            ax.axvline(r["latency_ms"], color="0.55", ls=":", lw=1)
            ax.annotate(r["name"], (r["latency_ms"], 0.02), xycoords=("data", "axes fraction"), rotation=90,
                        fontsize=7, color="0.4", xytext=(2, 0), textcoords="offset points")


def plot_latency_hist(runs: list[tuple[str, TrialTable, float | None]], path: Path, title: str = "",
                      formats: tuple[str, ...] = ()) -> Path:
    """Histograms of the sampled models' latencies, each run with its own T (the paper's Fig. 6). Several
    runs are normalised to densities, so runs of different lengths compare by shape."""
    plt = _plt()
    fig, ax = _figure(plt)
    lats = [t.latency_ms[np.isfinite(t.latency_ms)] for _, t, _ in runs]
    allv = np.concatenate(lats) if lats else np.zeros(0)
    several = len(runs) > 1
    if allv.size:
        bins = np.histogram_bin_edges(allv, bins=min(60, max(10, int(np.sqrt(allv.size)))))
        for k, ((label, _, _), lat) in enumerate(zip(runs, lats)):
            ax.hist(lat, bins=bins, alpha=0.55 if several else 0.85, density=several, color=f"C{k}",
                    label=f"{label} ({lat.size})")
    else:
        ax.text(0.5, 0.5, "no measured latencies yet", ha="center", transform=ax.transAxes)
    for k, (_, _, target) in enumerate(runs):
        if target:
            ax.axvline(target, color=f"C{k}" if several else "k", ls="--", lw=1)
            ax.text(target, ax.get_ylim()[1] * (0.95 - 0.07 * k), f" T={target:.4g} ms", va="top", fontsize=8,
                    color=f"C{k}" if several else "k")
    ax.set_xlabel("latency of sampled model (ms)")
    ax.set_ylabel("density of models" if several else "models")
    if not several:
        ax.yaxis.set_major_locator(_integers())
    ax.set_title(title or "Latencies of the sampled models")
    _finish(fig, ax, READ["latency_hist"])
    return _save(fig, path, formats)


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


def plot_entropy(diagnostics: list[dict[str, Any]], tokens: np.ndarray, path: Path, title: str = "",
                 cardinalities: list[int] | None = None, formats: tuple[str, ...] = ()) -> Path:
    """Entropies drawn from 0 to their maximum (uniform choices: sum of log(choices) for the policy, their
    mean per decision for the sampled choices), so a tiny wiggle is not mistaken for a collapse."""
    plt = _plt()
    logs = np.log(np.asarray(cardinalities or [], dtype=np.float64))
    fig, ax = _figure(plt, right=0.88 if diagnostics else 0.97, left=0.15)
    pts = [(d["trials_told"], d["entropy"]) for d in diagnostics
           if isinstance(d.get("entropy"), (int, float)) and d.get("trials_told") is not None]
    handles = []
    if pts:
        x, y = np.array(pts, dtype=np.float64).T
        handles += ax.plot(x, y, marker="o" if len(pts) < 50 else None, ms=3,
                           label="controller policy entropy (nats, left)")
        if logs.size:
            handles.append(ax.axhline(logs.sum(), color="C0", ls=":", lw=1, label="its maximum (uniform policy)"))
            ax.set_ylim(0, logs.sum() * 1.05)
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
        if logs.size:
            handles.append(ax2.axhline(logs.mean(), color="C1", ls=":", lw=1,
                                       label="its maximum (uniform choices)"))
            ax2.set_ylim(0, logs.mean() * 1.05)
    if not handles:
        ax.text(0.5, 0.5, "no entropy recorded", ha="center", transform=ax.transAxes)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.xaxis.set_major_locator(_integers())
    # a strategy without a controller (random, evolution) reports no policy entropy: no controller panel
    ax.set_xlabel("trials told to the controller" if pts else "trials")
    ax.set_ylabel("entropy (nats)")
    ax.set_title(title or ("Controller entropy over time" if pts else "Entropy of the sampled choices over time"))
    ax.grid(alpha=0.3)
    _finish(fig, ax, READ["entropy" if pts else "entropy_sampled"], handles)
    return _save(fig, path, formats)


def _figure(plt, right: float = 0.97, height: float = 4.0, left: float = 0.11):
    fig, ax = plt.subplots(figsize=(7, height))
    fig.subplots_adjust(left=left, right=right, bottom=0.13, top=0.91)
    return fig, ax


def _integers():
    """Ticks at whole numbers only (counts, trial ids): no "trial 2.5"."""
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


CAPTION_WRAP = 125  # characters per caption line at 7 pt on a 7-inch figure
_IN_PER_CHAR = 0.062  # the width of a legend character at 8 pt, in inches (a generous estimate)


def _finish(fig, ax, caption: str, handles: list | None = None) -> None:
    """The legend below the axes, in as many columns as fit, and ``caption`` under it: the figure grows
    by what they take, so the axes keep their size and nothing is drawn over a point. Fixed margins:
    no second layout pass (tight_layout would render the figure once more just to measure it)."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    labels = [h.get_label() for h in handles]
    width, height = fig.get_size_inches()
    sub = fig.subplotpars
    bottom_in, top_in = sub.bottom * height, (1 - sub.top) * height
    lines = textwrap.wrap(caption, CAPTION_WRAP)
    caption_in = 0.13 * len(lines) + 0.1 if lines else 0.0
    legend_in, cols = 0.0, 1
    if labels:
        widest = 0.5 + _IN_PER_CHAR * max(len(t) for t in labels)
        cols = max(1, min(len(labels), int((width - 0.3) // widest)))
        legend_in = 0.2 * math.ceil(len(labels) / cols) + 0.12
    total = height + legend_in + caption_in
    fig.set_size_inches(width, total)
    fig.subplots_adjust(bottom=(bottom_in + legend_in + caption_in) / total, top=1 - top_in / total)
    if labels:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, caption_in / total), ncols=cols,
                   fontsize=8, frameon=False)
    if lines:
        fig.text(0.015, 0.05 / total, "\n".join(lines), fontsize=7, color="0.3", ha="left", va="bottom")


def _label_points(ax, xs, ys, texts: list[str], color: str, fontsize: float = 7) -> None:
    """Each text beside its point, right or left, below or above, wherever it stays inside the axes and
    covers neither a labelled point nor a label placed before it; a label that fits nowhere is left out (the
    tables name every trial). Boxes are estimated from the font size, in points on the page, so no rendering
    is needed."""
    ax.get_xlim(), ax.get_ylim()  # the limits autoscaling gives, before they are used
    to_pt = ax.transData.transform  # pixels at the figure's dpi; the axes keep their size in _finish
    scale = 72.0 / ax.figure.dpi
    x0, y0, x1, y1 = (v * scale for v in ax.bbox.extents)
    at = [tuple(v * scale for v in to_pt((x, y))) for x, y in zip(xs, ys)]
    placed: list[tuple[float, float, float, float]] = [(px - 3, py - 3, px + 3, py + 3) for px, py in at]
    for x, y, (px, py), text in zip(xs, ys, at, texts):
        w, h = 0.65 * fontsize * len(text) + 1, fontsize + 1
        for dx, dy in ((4, -10), (4, 4), (-4 - w, -10), (-4 - w, 4)):
            box = (px + dx, py + dy, px + dx + w, py + dy + h)
            inside = x0 <= box[0] and box[2] <= x1 and y0 <= box[1] and box[3] <= y1
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                                  for b in placed):
                placed.append(box)
                ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            color=color)
                break


PNG_DPI = 200  # print resolution: a 7-inch-wide figure is 1400 px


def _save(fig, path: Path, formats: tuple[str, ...] = ()) -> Path:
    """The PNG at ``path`` plus a copy in each of ``formats`` (svg, pdf) beside it."""
    import matplotlib.pyplot as plt
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed margins: tight_layout would render the whole figure once more just to measure the labels
    # atomically: a failure (a full disk) or a kill never leaves half a figure where the last one was
    atomic_write(path, lambda f: fig.savefig(f, dpi=PNG_DPI, format="png"))
    for fmt in formats:
        atomic_write(path.with_suffix(f".{fmt}"), lambda f, fmt=fmt: fig.savefig(f, format=fmt))
    plt.close(fig)
    return path


def write_plots(out_dir: Path, table: TrialTable, target_ms: float | None, diagnostics: list[dict[str, Any]],
                tokens: np.ndarray, label: str = "this run",
                compare: list[tuple[str, TrialTable, float | None]] | None = None,
                references: list[dict[str, Any]] | None = None, cardinalities: list[int] | None = None,
                formats: tuple[str, ...] = ("svg", "pdf")) -> dict[str, Path]:
    """The four plots as PNG, plus each of ``formats`` (vector copies beside the PNG)."""
    out_dir = Path(out_dir)
    return {
        "reward": plot_reward(table, out_dir / PLOT_NAMES["reward"], formats=formats),
        "pareto": plot_pareto(table, out_dir / PLOT_NAMES["pareto"], target_ms, references=references,
                              formats=formats),
        "latency_hist": plot_latency_hist([(label, table, target_ms), *(compare or [])],
                                          out_dir / PLOT_NAMES["latency_hist"],
                                          "Latencies of the sampled models" + (" (compared)" if compare else ""),
                                          formats=formats),
        "entropy": plot_entropy(diagnostics, tokens, out_dir / PLOT_NAMES["entropy"], cardinalities=cardinalities,
                                formats=formats),
    }
