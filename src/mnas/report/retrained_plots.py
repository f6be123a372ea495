"""The plots of ``mnas retrain``'s models, in the style of the search's plots (plots.py): retrained top-1
against measured latency with the reference curves, and retrained top-1 against the search's proxy accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnas.report.plots import _figure, _finish, _label_points, _plt, _save
from mnas.report.retrained import GOAL_POINTS, GOAL_SAVING, ISSUE_TAU_N, MIN_TAU_N

RETRAINED_PLOT_NAMES = {"retrained": "retrained.png", "proxy_fidelity": "proxy_fidelity.png"}
READ_RETRAINED = {
    "retrained": "Top-1 after full training against measured latency. Each reference line is one model at several "
                 "widths; a searched model (red, labelled with its trial id) above the dashed or left of the "
                 "dotted goal line beats that reference by the issue's margin.",
    "proxy_fidelity": "Each point is one model: its proxy accuracy in the search against its top-1 after full "
                      "training. Points rising to the right (Kendall tau near 1) mean the proxy ranks models "
                      "as full training does.",
}


def _name(row: dict[str, Any]) -> str:
    """What a point is called: the trial id the tables use, else the row's label."""
    return str(row["trial_id"]) if row.get("trial_id") is not None else row["label"]


def _done(row: dict[str, Any]) -> bool:
    return row.get("status") == "completed" and row.get("top1") is not None and row.get("latency_ms") is not None


def plot_retrained(r: dict[str, Any], path: Path, formats: tuple[str, ...] = ()) -> Path:
    """Each reference curve as a line (widths annotated) with the goal drawn beside it: +1 point at equal
    latency (dashed) and 15 % less latency at equal top-1 (dotted); a searched model above or left of either
    meets it. Other references are labelled markers, searched models points labelled with their trial id."""
    plt = _plt()
    fig, ax = _figure(plt, right=0.98, height=4.5)
    in_curve = {p["label"] for c in r["curves"] for p in c["points"]}
    for k, c in enumerate(r["curves"]):
        color = "0.25" if k == 0 else f"C{k + 2}"
        x = [p["latency_ms"] for p in c["points"]]
        y = [100 * p["top1"] for p in c["points"]]
        ax.plot(x, y, color=color, marker="s", ms=4, lw=1.4, label=f"{c['label']} (retrained, by width)")
        ax.plot(x, [v + GOAL_POINTS for v in y], color=color, ls="--", lw=0.8, alpha=0.7,
                label=f"goal: +{GOAL_POINTS:g} point at equal latency")
        ax.plot([(1 - GOAL_SAVING) * v for v in x], y, color=color, ls=":", lw=0.9, alpha=0.8,
                label=f"goal: {100 * GOAL_SAVING:.0f} % less latency at equal top-1")
        for p, xi, yi in zip(c["points"], x, y):
            ax.annotate(f"×{p['width']:g}" if p.get("width") is not None else p["label"], (xi, yi), xytext=(4, -10),
                        textcoords="offset points", fontsize=7, color=color)
    others = [row for row in r["rows"] if row["kind"] == "reference" and _done(row) and row["label"] not in in_curve]
    if others:
        ax.scatter([o["latency_ms"] for o in others], [100 * o["top1"] for o in others], marker="D", s=28,
                   color="0.45", label="other reference models", zorder=3)
        for o in others:
            ax.annotate(o["label"], (o["latency_ms"], 100 * o["top1"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="0.35")
    mine = [row for row in r["rows"] if row["kind"] != "reference" and _done(row)]
    if mine:
        ax.scatter([m["latency_ms"] for m in mine], [100 * m["top1"] for m in mine], s=30, color="C3", zorder=4,
                   label="searched models (trial id)")
        met = {c["key"] for c in r["comparisons"] if c["meets_goal"]}
        hits = [m for m in mine if m["key"] in met]
        if hits:
            ax.scatter([m["latency_ms"] for m in hits], [100 * m["top1"] for m in hits], s=110, facecolors="none",
                       edgecolors="C3", lw=1.2, zorder=4, label="meets the goal")
    if not (mine or others or r["curves"]):
        ax.text(0.5, 0.5, "no completed retrained models yet", ha="center", transform=ax.transAxes)
    # the dataset's file name, not its path: a path would run off the figure
    datasets = sorted({Path(str((row.get("data") or {}).get("dataset")).split(":", 1)[-1]).name
                       for row in r["rows"] if _done(row)})
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel(f"top-1 (%, retrained{', ' + ', '.join(datasets) if datasets else ''})")
    ax.set_title("Retrained models: top-1 against measured latency")
    ax.grid(alpha=0.3)
    if mine:  # where a label would cover another, it is left out (the table names every model)
        _label_points(ax, [m["latency_ms"] for m in mine], [100 * m["top1"] for m in mine],
                      [_name(m) for m in mine], color="C3")
    _finish(fig, ax, READ_RETRAINED["retrained"])
    return _save(fig, path, formats)


def plot_proxy_fidelity(fid: dict[str, Any], path: Path, formats: tuple[str, ...] = ()) -> Path:
    plt = _plt()
    fig, ax = _figure(plt)
    pts = fid["points"]
    x = [100 * p["proxy_accuracy"] for p in pts]
    y = [100 * p["top1"] for p in pts]
    ax.scatter(x, y, s=30, color="C0", zorder=3)
    tau = "undefined" if fid["tau"] is None else f"{fid['tau']:.2f}"
    pval = f", p = {fid['p_value']:.2g}" if fid.get("p_value") is not None else ""
    few = f"; below the issue's {ISSUE_TAU_N}" if fid["below_issue_minimum"] else ""
    ax.set_title(f"Proxy fidelity: Kendall τ = {tau} (n = {fid['n']}{pval}{few})")
    ax.set_xlabel("proxy accuracy (%, search)")
    ax.set_ylabel("top-1 (%, retrained)")
    ax.grid(alpha=0.3)
    _label_points(ax, x, y, [_name(p) for p in pts], color="C0")
    _finish(fig, ax, READ_RETRAINED["proxy_fidelity"])
    return _save(fig, path, formats)


def write_retrained_plots(out_dir: Path, r: dict[str, Any],
                          formats: tuple[str, ...] = ("svg", "pdf")) -> dict[str, Path]:
    """plots/retrained.png when there are retrained models, plots/proxy_fidelity.png once tau is reported."""
    if not r:
        return {}
    out_dir = Path(out_dir)
    paths = {"retrained": plot_retrained(r, out_dir / RETRAINED_PLOT_NAMES["retrained"], formats)}
    if r["proxy_fidelity"]["n"] >= MIN_TAU_N:
        paths["proxy_fidelity"] = plot_proxy_fidelity(r["proxy_fidelity"],
                                                      out_dir / RETRAINED_PLOT_NAMES["proxy_fidelity"], formats)
    return paths
