"""``mnas report``: read the store once, then summary, plots and the HTML page from the same arrays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.report.retrained import summarize_retrained
from mnas.report.summary import open_store, summarize
from mnas.store.query import token_matrix, trial_table


def make_report(directory: str | Path, top: int = 10, targets: list[float] | None = None,
                plots: bool = True, html: bool = True, compare: list[str | Path] | None = None,
                html_rows: int = 1000, formats: tuple[str, ...] = ("svg", "pdf")) -> dict[str, Any]:
    """Summary dict (what ``--json`` prints) plus ``plots`` / ``html`` paths when written."""
    directory = Path(directory)
    for t in targets or []:
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise MnasError(f"--target {t}: a latency target is a finite number of milliseconds > 0")
    with open_store(directory) as store:
        table = trial_table(store)
        summary = summarize(store, table, top=top, targets=targets)
        retrained = summarize_retrained([r.to_dict() for r in store.retrained()])
        if retrained:  # absent for an experiment nothing was retrained in
            summary["retrained"] = retrained
        others = []
        for other in compare or []:
            with open_store(other) as o:
                ot = trial_table(o)
                osum = summarize(o, ot, top=1)
            others.append((_label(Path(other), osum), ot, osum))
        if others:
            summary["compare"] = [{k: s[k] for k in ("dir", "trials", "completed", "failed", "target_ms", "alpha",
                                                      "beta", "best")} for _, _, s in others]
        if plots or html:
            from mnas.report.plots import write_plots
            meta = store.meta()
            paths = write_plots(directory / "plots", table, summary["target_ms"], store.diagnostics(),
                                token_matrix(store), label=_label(directory, summary),
                                compare=[(lbl, t, s["target_ms"]) for lbl, t, s in others],
                                references=meta.references,
                                cardinalities=[len(d["choices"]) for d in meta.space.get("decisions", [])],
                                formats=formats)
            if retrained:
                from mnas.report.retrained_plots import write_retrained_plots
                paths.update(write_retrained_plots(directory / "plots", retrained, formats=formats))
            summary["plots"] = {k: str(v) for k, v in paths.items()}
            if html:
                from mnas.report.html import write_html
                summary["html"] = str(write_html(directory / "report.html", summary, table, paths, html_rows))
    return summary


def _label(path: Path, summary: dict[str, Any]) -> str:
    a, b = summary.get("alpha"), summary.get("beta")
    return f"{path.name} (alpha={a}, beta={b})" if a is not None else path.name
