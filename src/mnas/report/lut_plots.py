"""The plot of ``mnas lut eval``, in the style of the search's plots (plots.py): each network's prediction
against its measurement, in milliseconds as a search sees them and as LAT/T as the reward reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnas.report.plots import _finish, _plt, _save

BAND = 0.10  # the ±10 % an eval judges (``within_10pct``)
READ_LUT_EVAL = (
    "Each point is one network of the eval (drawn with the eval's seed, never a calibration network): the table's"
    " prediction against its measurement on this machine. On the diagonal the table is exact; between the dashed "
    "lines it is within ±10 %. Left: milliseconds as a search on lut:PATH sees them (the speed factor from the "
    "references timed at its start). Right: LAT/T as the reward reads it (the table's two predictions against the"
    " network timed beside T in the same rounds); the shaded band holds the networks within ±10 % of T, whose "
    "order decides a search near its target.")


def _pct(view: dict[str, Any] | None) -> str:
    if not view:
        return ""
    lo, hi = view["within_10pct_ci95"]
    return f"{view['within_10pct']:.1%} within ±10 % [{lo:.1%}, {hi:.1%}], tau {view['kendall_tau']:.3f}"


def _panel(ax, measured: list[float], predicted: list[float], noisy: list[bool]) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    lo, hi = min(measured + predicted), max(measured + predicted)
    lo, hi = lo / 1.15, hi * 1.15
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, label="prediction = measurement")
    ax.plot([lo, hi], [lo * (1 + BAND), hi * (1 + BAND)], color="0.5", lw=0.8, ls="--", label="±10 %")
    ax.plot([lo, hi], [lo * (1 - BAND), hi * (1 - BAND)], color="0.5", lw=0.8, ls="--")
    steady = [i for i, n in enumerate(noisy) if not n]
    shaky = [i for i, n in enumerate(noisy) if n]
    ax.scatter([measured[i] for i in steady], [predicted[i] for i in steady], s=12, color="C0", alpha=0.75,
               label="a network", zorder=3)
    if shaky:
        ax.scatter([measured[i] for i in shaky], [predicted[i] for i in shaky], s=22, marker="x", color="C3",
                   label="measurement flagged noisy", zorder=4)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1, 2, 5 x 10^k: "3 x 10^0" labels run together
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FormatStrFormatter("%g"))
        axis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")


def plot_lut_eval(res: dict[str, Any], path: Path, formats: tuple[str, ...] = ()) -> Path:
    """``res``: ``mnas.latency.lut.evaluate.evaluate``'s result with its ``samples``."""
    samples = res.get("samples") or []
    if not samples:
        raise ValueError("the eval's result has no samples to plot")
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.80, wspace=0.32)
    measured = [s["measured_ms"] for s in samples]
    noisy = [bool(s.get("noisy")) for s in samples]
    factor = (res.get("search_speed") or {}).get("factor")
    views = res.get("views") or {}
    if factor:
        _panel(left, measured, [s["unscaled_ms"] * factor for s in samples], noisy)
        left.set_title(f"ms as the search sees them\n{_pct(views.get('search'))}", fontsize=8)
    else:  # no references timed at the start: the table's own figures
        _panel(left, measured, [s["unscaled_ms"] for s in samples], noisy)
        left.set_title(f"ms, unscaled (no speed factor)\n{_pct(views.get('unscaled'))}", fontsize=8)
    left.set_xlabel("measured (ms)")
    left.set_ylabel("predicted (ms)")
    ratio = views.get("ratio")
    truth = [s.get("measured_ratio") for s in samples]
    if ratio and all(t is not None for t in truth):
        pred_t = ratio["target_predicted_ms"]
        _panel(right, truth, [s["unscaled_ms"] / pred_t for s in samples], noisy)
        right.axvspan(1 - BAND, 1 + BAND, color="C2", alpha=0.12, lw=0, label="within ±10 % of T")
        right.set_title(f"LAT/T, T = {res['near_target']['target']}\n{_pct(ratio)}", fontsize=8)
        right.set_xlabel("measured LAT/T (T in the same rounds)")
        right.set_ylabel("predicted LAT/T")
    else:
        right.text(0.5, 0.5, "no LAT/T: T is not a model\ntimed beside the networks", ha="center", va="center",
                   transform=right.transAxes, fontsize=8)
        right.set_axis_off()
    fig.suptitle(f"Latency table against {res.get('n', len(samples))} fresh networks: {res.get('backend')}, "
                 f"{res.get('resolution')} px, seed {res.get('seed')}", fontsize=10)
    handles, seen = [], set()
    for ax in (left, right):
        for h in ax.get_legend_handles_labels()[0]:
            if h.get_label() not in seen:
                seen.add(h.get_label())
                handles.append(h)
    _finish(fig, left, READ_LUT_EVAL, handles)
    return _save(fig, path, formats)
