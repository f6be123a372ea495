"""``mnas report DIR`` and ``mnas export DIR --rank K``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mnas import MnasError
from mnas.cli.app import app
from mnas.cli.output import console as _console
from mnas.cli.output import print_json, table


def _wide_console():
    """Piped output has no width (rich would fold at 80 columns); give architecture strings room instead."""
    from rich.console import Console
    return _console if _console.is_terminal else Console(width=400)


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _rows(items: list[dict]) -> list[list[str]]:
    return [[str(r.get("rank") or ""), str(r["id"]), _num(r["accuracy"], ".4f"), _num(r["latency_ms"], ".3f"),
             _num(r["reward"], ".4f"), _num(r["params"] and r["params"] / 1e6, ".2f"),
             _num(r["macs"] and r["macs"] / 1e6, ".1f"), r["arch"]] for r in items]


COLS = ["rank", "trial", "accuracy", "latency ms", "reward", "params M", "MACs M", "architecture"]


@app.command("report")
def report(directory: Path = typer.Argument(..., help="experiment directory (mnas search --out DIR)"),
           json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
           top: int = typer.Option(10, "--top", min=1, help="architectures in the top table"),
           target: Optional[List[float]] = typer.Option(None, "--target", help="latency target in ms "
                                                        "(repeatable; default 0.5, 0.75, 1, 1.5, 2 x T)"),
           compare: Optional[List[Path]] = typer.Option(None, "--compare", help="another experiment to overlay "
                                                        "in the latency histogram (repeatable)"),
           plots: bool = typer.Option(True, "--plots/--no-plots", help="write DIR/plots/*.png"),
           html: bool = typer.Option(True, "--html/--no-html", help="write DIR/report.html"),
           html_rows: int = typer.Option(1000, "--html-rows", min=1, help="trials listed in report.html")) -> None:
    """Top architectures, Pareto front, counts, best under latency targets; plots and report.html."""
    from mnas.report.build import make_report

    console = _wide_console()

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
    console.print(f"[bold]{s['dir']}[/]: {s['trials']} trials, {s['completed']} completed, {s['failed']} failed, "
                  f"{s['running']} running; {s['unique_architectures']} unique architectures")
    console.print(f"reward: T = {s['target_ms']} ms, alpha = {s['alpha']}, beta = {s['beta']}; "
                  f"latency backend {s['backend']} at {s['latency_settings'].get('resolution', '?')} px")
    console.print(table(f"top {len(s['top'])} architectures by reward", COLS, _rows(s["top"])))
    console.print(table(f"Pareto front, accuracy against latency ({len(s['pareto'])} models)", COLS,
                        _rows(s["pareto"])))
    trows = [[f"{t['target_ms']:g}", *(_rows([t["best"]])[0][:4] if t["best"] else ["-", "none this fast", "", ""])]
             for t in s["targets"]]
    console.print(table("most accurate model under each latency target", ["target ms", "rank", "trial",
                                                                           "accuracy", "latency ms"], trows))
    for e in s["errors"][:5]:
        console.print(f"[red]failed x{e['count']}[/]: {e['error']}")
    for c in s.get("compare", []):
        console.print(f"compared with {c['dir']}: {c['completed']} completed, alpha = {c['alpha']}, "
                      f"beta = {c['beta']}")
    if s.get("plots"):
        console.print("plots: " + ", ".join(s["plots"].values()))
    if s.get("html"):
        console.print(f"page: {s['html']}")


@app.command("export")
def export(directory: Path = typer.Argument(..., help="experiment directory"),
           rank: Optional[int] = typer.Option(None, "--rank", min=1, help="1 (default) = the highest reward, "
                                              "as in mnas report"),
           trial: Optional[int] = typer.Option(None, "--trial", min=1, help="a trial id (mnas trials) instead "
                                               "of a rank"),
           fmt: str = typer.Option("onnx", "--format", help="onnx | tflite | torchscript | pytorch"),
           out: Path = typer.Option(..., "--out", help="file to write"),
           measure: bool = typer.Option(True, "--measure/--no-measure", help="re-time the written file"),
           runs: Optional[int] = typer.Option(None, "--runs", min=1, help="override the search's timed runs"),
           json: bool = typer.Option(False, "--json")) -> None:
    """Build a searched architecture at full size, write it, check it against PyTorch, re-measure the file."""
    from mnas.report.export import FORMATS, export_trial

    console = _wide_console()

    if fmt.lower() not in FORMATS:
        raise MnasError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if rank is not None and trial is not None:
        raise MnasError("give --rank or --trial, not both")
    row, res = export_trial(directory, rank, fmt, out, measure=measure, runs=runs, trial_id=trial)
    d = res.to_dict()
    if json:
        print_json(d)
        return
    console.print(f"rank {row['rank']}: trial {row['id']}, accuracy {_num(row['accuracy'], '.4f')} (proxy), "
                  f"reward {_num(row['reward'], '.4f')}")
    console.print(f"architecture: {row['arch']}")
    console.print(f"wrote {res.path} ({res.format}, {res.path.stat().st_size / 1e6:.2f} MB), input "
                  f"{'x'.join(map(str, res.input_shape))}, {res.num_classes} classes")
    console.print(f"weights: {res.weights}")
    rel = res.max_abs_diff / max(res.output_scale, 1e-12)
    verdict = "matches PyTorch" if rel < 1e-3 else "[red]DIFFERS from PyTorch[/]"
    console.print(f"{verdict}: max |diff| {res.max_abs_diff:.3g} (outputs up to {res.output_scale:.3g}, "
                  f"relative {rel:.2g})")
    if res.measured:
        m = res.measured
        prefix = (d["search_backend"] or "").split(":")[0].lower()
        same = {"ort": "onnxruntime", "tflite": "litert"}.get(prefix, prefix) == res.runtime
        console.print(f"latency: re-measured {m.median_ms:.3f} ms (median, {res.runtime} {m.runtime_version}, "
                      f"{m.runs} runs, cv {m.cv:.3f}) vs searched {_num(row['latency_ms'], '.3f')} ms "
                      f"(backend {d['search_backend']})")
        if not same:
            console.print(f"[yellow]note[/]: the search timed with {d['search_backend']}, this file runs in "
                          f"{res.runtime}: the two figures come from different runtimes")
