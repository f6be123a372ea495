"""``mnas report EXPERIMENT`` (``mnas export`` is in export_cmds.py)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mnas import MnasError
from mnas.cli.output import ARCH_HINT, ARCH_WIDTH, print_json, ranked_table, table, wide_console

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app


def _rows(items: list[dict], retimed: bool = False) -> list[list[str]]:
    return [[str(r.get("rank") or ""), str(r["id"]), _num(r["accuracy"], ".4f"), _num(r["latency_ms"], ".3f"),
             *([_num(r.get("retimed_ms"), ".3f")] if retimed else [])] for r in items]


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _print_retrained(console, r: dict) -> None:
    """The models ``mnas retrain`` trained: their table, each searched model against each reference curve
    (the issue's goal), and how well the proxy ranked them."""
    from mnas.report.retrained import TABLE_COLUMNS, comparison_line, fidelity_line, goal_lines, table_rows

    n = r["counts"]
    console.print(table(f"retrained models ({n['completed']} completed, {n['running']} running, {n['failed']} "
                        "failed)", TABLE_COLUMNS, table_rows(r)))
    for c in r["comparisons"]:  # store text (labels) printed as is, never read as rich markup
        console.print(comparison_line(c), markup=False, highlight=False)
    for line in goal_lines(r):
        console.print(line, markup=False, highlight=False)
    if r["without_curve"]:
        console.print("no reference curve trained on the same data with the same recipe for: "
                      + ", ".join(r["without_curve"]), markup=False)
    console.print(fidelity_line(r["proxy_fidelity"]), markup=False, highlight=False)
    for row in r["rows"]:
        if row["status"] == "failed":
            error = (row.get("error") or "no error recorded").strip().splitlines()[0][:160]
            console.print(f"retrain failed: {row['label']}: {error}", markup=False, highlight=False)


@app.command("report")
def report(directory: Path = typer.Argument(..., metavar="EXPERIMENT", help="experiment directory (mnas search "
                                            "EXPERIMENT)"),
           json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
           top: int = typer.Option(10, "--top", "-n", min=1, help="architectures in the top table"),
           target: Optional[List[float]] = typer.Option(None, "--target", help="latency target in ms "
                                                        "(repeatable; default 0.5, 0.75, 1, 1.5, 2 x T)"),
           compare: Optional[List[Path]] = typer.Option(None, "--compare", help="another experiment to overlay "
                                                        "in the latency histogram (repeatable)"),
           plots: bool = typer.Option(True, "--plots/--no-plots", help="write EXPERIMENT/plots/*.png"),
           html: bool = typer.Option(True, "--html/--no-html", help="write EXPERIMENT/report.html"),
           html_rows: int = typer.Option(1000, "--html-rows", min=1, help="trials listed in report.html"),
           remeasure: bool = typer.Option(False, "--remeasure", help="first time the Pareto front and the --top "
                                          "trials again beside T's model on the search's backend (each timing "
                                          "kept with the machine's load); the report then uses those figures")
           ) -> None:
    """Top architectures, Pareto front, counts, best under latency targets; plots and report.html."""
    from mnas.report.build import make_report

    console = wide_console()
    if remeasure:
        from mnas.search.retime import retime_experiment

        timed = retime_experiment(directory, top)
        if not json:
            console.print(f"re-timed {len(timed)} trials (the Pareto front and the top {top})")
    try:
        s = make_report(directory, top=top, targets=target, plots=plots, html=html, compare=compare,
                        html_rows=html_rows)
    except OSError as e:  # the store is only read; the plots and the page are written next to it
        if not (plots or html):
            raise
        raise MnasError(f"cannot write the report's plots and page into {directory} ({e.strerror}): add "
                        "--no-plots --no-html to print the report only") from e
    if json:
        print_json(s)
        return
    pruned = f"{s['pruned']} pruned, " if s.get("pruned") else ""
    console.print(f"[bold]{s['dir']}[/]: {s['trials']} trials, {s['completed']} completed, {s['failed']} failed, "
                  f"{pruned}{s['running']} running; {s['unique_architectures']} unique architectures")
    console.print(f"reward: T = {s['target_ms']} ms, alpha = {s['alpha']}, beta = {s['beta']}; "
                  f"latency backend {s['backend']} at {s['latency_settings'].get('resolution', '?')} px")
    rt = s.get("retimed")
    if s.get("timed_beside_target"):
        console.print(f"{s['timed_beside_target']} trials timed beside T's model: latency ms = LAT/T x the stored T")
    if rt:
        load = f", load {rt['load'][0]:g}-{rt['load'][1]:g}" if rt.get("load") else ""
        console.print(f"re-timed ms: {rt['trials']} trials, {rt['timings']} timings{load}; {rt['label']}",
                      markup=False, highlight=False)
    cut = console.is_terminal
    console.print(ranked_table(f"top {len(s['top'])} architectures by reward", s["top"], cut, bool(rt)))
    console.print(ranked_table(f"Pareto front, accuracy against {'re-timed ' if rt else ''}latency "
                               f"({len(s['pareto'])} models)", s["pareto"], cut, bool(rt)))
    n = 5 if rt else 4
    trows = [[f"{t['target_ms']:g}", *(_rows([t["best"]], bool(rt))[0] if t["best"] else
                                       ["-", "none this fast", *[""] * (n - 2)])] for t in s["targets"]]
    console.print(table("most accurate model under each latency target",
                        ["target ms", "rank", "trial", "accuracy", "latency ms", *(["re-timed ms"] if rt else [])],
                        trows))
    _print_references(console, s)
    for e in s["errors"][:5]:
        console.print(f"[red]failed x{e['count']}[/]: {e['error']}")
    for c in s.get("compare", []):
        console.print(f"compared with {c['dir']}: {c['completed']} completed, alpha = {c['alpha']}, "
                      f"beta = {c['beta']}")
    if s.get("retrained"):
        _print_retrained(console, s["retrained"])
    if cut and any(len(r["arch"]) > ARCH_WIDTH for r in s["top"] + s["pareto"]):
        console.print(ARCH_HINT.format(json=f"mnas report {directory} --json"), markup=False, highlight=False)
    if s.get("plots"):
        console.print("plots: " + ", ".join(s["plots"].values()))
    if s.get("html"):
        console.print(f"page: {s['html']}")
    if s.get("csv"):
        console.print(f"every trial: {s['csv']}")
    _print_story(console, s)


def _print_references(console, s: dict) -> None:
    """The reference models, scored on the same proxy where the search did (references.score)."""
    refs, n = s.get("references") or [], s.get("references_scored") or {}
    if not refs:
        return
    rows = [[r["name"], _num(r["accuracy"], ".4f"), _num(r["latency_ms"], ".3f"), _num(r["reward"], ".4f"),
             _num(r["params"] and r["params"] / 1e6, ".2f"), _num(r["macs"] and r["macs"] / 1e6, ".1f"),
             (r.get("error") or "").splitlines()[0][:80] if r.get("error") else ""] for r in refs]
    how = (f"scored on the same proxy: {n['scored']} in {n['seconds']:g} s, not trials (outside the trial budget)"
           if n.get("scored") or n.get("failed") else "timed only (references.score: true scores them)")
    console.print(table(f"reference models, {how}", ["reference", "accuracy", "latency ms", "reward", "params M",
                                                      "MACs M", "error"], rows))


def _print_story(console, s: dict) -> None:
    """The report's end: the winner against MobileNetV2 at equal latency (one table), then what to run next."""
    from mnas.report.story import versus_table

    if s.get("versus"):
        cols, rows = versus_table(s["versus"])
        console.print(table("the found model against MobileNetV2 at equal latency, on the proxy task", cols, rows))
        console.print(s["versus"]["note"], markup=False, highlight=False)
    if s.get("next"):
        console.print("next:")
        for step in s["next"]:
            console.print(f"  {step['what']}: {step.get('command') or step.get('path')}", markup=False,
                          highlight=False)

