"""EXPERIMENT/report.html: one file with everything inside (plots as base64 PNGs, a table sortable by plain inline JS),
so it can be mailed or attached to an issue and still open offline.

The markup lives in ``templates/report.html.j2``; Jinja2 autoescapes every value put into it, so an
architecture string or error text can never inject markup or script into the page."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from mnas.fileio import atomic_write
from mnas.report.retrained import TABLE_COLUMNS, comparison_line, fidelity_line, goal_lines, table_rows
from mnas.report.summary import caption_text
from mnas.store.query import TrialTable

log = logging.getLogger(__name__)

COLUMNS = [("rank", "rank", "num"), ("id", "trial", "num"), ("status", "status", "text"),
           ("accuracy", "accuracy", "num"), ("latency_ms", "latency (ms)", "num"),
           ("retimed_ms", "re-timed (ms)", "num"), ("reward", "reward", "num"),
           ("params", "params (M)", "num"), ("macs", "MACs (M)", "num"), ("arch", "architecture", "text")]
RETRAINED_PLOTS = ("retrained", "proxy_fidelity")  # shown in their own section, beside their table


def _fmt(value: Any, col: str) -> tuple[str, str]:
    """(sort key, text shown) for one cell."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "", ""
    if col in ("params", "macs"):
        return str(value), f"{value / 1e6:.2f}"
    if col == "accuracy":
        return repr(value), f"{value:.4f}"
    if col in ("latency_ms", "retimed_ms", "reward"):
        return repr(value), f"{value:.4f}" if col == "reward" else f"{value:.3f}"
    return str(value), str(value)


# StrictUndefined: a misspelt name in the template fails the report instead of leaving a blank cell.
_env = jinja2.Environment(loader=jinja2.PackageLoader("mnas.report", "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True)
_env.filters["cell"] = _fmt


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(name: str, path: Path) -> dict[str, str]:
    return {"name": name, "src": _img(path), "file": Path(path).name}


def trial_rows(table: TrialTable, limit: int) -> list[dict[str, Any]]:
    """Completed trials by rank, then failed and running ones, at most ``limit``."""
    order = table.ranking()
    rank = {int(i): r + 1 for r, i in enumerate(order.tolist())}
    rest = np.setdiff1d(np.arange(len(table)), order, assume_unique=True)
    chosen = np.concatenate([order, rest])[:limit]
    return [{"rank": rank.get(int(i)), **table.row(int(i))} for i in chosen.tolist()]


def render(summary: dict[str, Any], table: TrialTable, plots: dict[str, Path], limit: int = 1000) -> str:
    rows = trial_rows(table, limit)
    log.debug("rendering report.html: %d of %d trials, %d plots", len(rows), len(table), len(plots))
    return _env.get_template("report.html.j2").render(
        s=summary, name=Path(summary["dir"]).name, columns=COLUMNS, rows=rows,
        caption=caption_text(summary["caption"]) if summary.get("caption") else "",
        front_ids={r["id"] for r in summary["pareto"]},
        plots=[figure(n, p) for n, p in plots.items() if n not in RETRAINED_PLOTS],
        retrained=_retrained(summary.get("retrained") or {},
                             [figure(n, p) for n, p in plots.items() if n in RETRAINED_PLOTS]))


def _retrained(r: dict[str, Any], figures: list[dict[str, str]]) -> dict[str, Any] | None:
    """What the page's "Retrained models" section shows; None leaves the section out (nothing retrained)."""
    if not r:
        return None
    return {"columns": TABLE_COLUMNS, "rows": table_rows(r), "counts": r["counts"],
            "lines": [comparison_line(c) for c in r["comparisons"]] + goal_lines(r),
            "without_curve": r["without_curve"],
            "fidelity": fidelity_line(r["proxy_fidelity"]), "plots": figures,
            "errors": [(row["label"], (row.get("error") or "no error recorded").strip().splitlines()[0][:300])
                       for row in r["rows"] if row.get("status") == "failed"]}


def write_html(path: Path, summary: dict[str, Any], table: TrialTable, plots: dict[str, Path],
               limit: int = 1000) -> Path:
    path = Path(path)
    atomic_write(path, render(summary, table, plots, limit))  # a reader (a browser) never sees half a page
    return path
