"""``mnas report``: read the store once, then summary, plots and the HTML page from the same arrays."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mnas import MnasError
from mnas.report.retrained import summarize_retrained
from mnas.report.story import next_commands
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
            summary["csv"] = str(write_trials_csv(directory / "trials.csv", table))
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
    summary["next"] = next_commands(directory, summary.get("html"), winner=summary["best"] is not None)
    return summary


def write_trials_csv(path: Path, table) -> Path:
    """Every trial, one row each in id order, with the columns of ``--json``'s rows: the table a result
    commits beside its numbers (a spreadsheet or pandas reads it as is)."""
    import csv
    import io

    from mnas.fileio import atomic_write

    rows = [table.row(i) for i in range(len(table))]
    rank = {int(table.id[i]): r + 1 for r, i in enumerate(table.ranking())}
    columns = ["id", "rank", *[k for k in (rows[0] if rows else {}) if k != "id"]]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns or ["id", "rank"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "rank": rank.get(r["id"], "")})
    atomic_write(path, buf.getvalue().encode())
    return path


def _label(path: Path, summary: dict[str, Any]) -> str:
    a, b = summary.get("alpha"), summary.get("beta")
    return f"{path.name} (alpha={a}, beta={b})" if a is not None else path.name
