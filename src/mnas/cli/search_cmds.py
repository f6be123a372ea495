"""``mnas search`` and ``mnas trials``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mnas.cli.app import app
from mnas.cli.output import console, print_json, table


@app.command("search")
def search(config: Path = typer.Option(..., "--config", "-c", help="experiment YAML (see configs/)"),
           out: Path = typer.Option(..., "--out", "-o", help="experiment directory (holds experiment.db)"),
           resume: bool = typer.Option(False, "--resume", help="continue the experiment in --out"),
           retry_failed: bool = typer.Option(False, "--retry-failed", help="re-run failed trials"),
           trials: Optional[int] = typer.Option(None, "--trials", min=1, help="total trial budget"),
           strategy: Optional[str] = typer.Option(None, "--strategy", help="ppo, random, evolution, ..."),
           seed: Optional[int] = typer.Option(None, "--seed")) -> None:
    """Run (or resume) a platform-aware search."""
    from mnas.search.config import load_config
    from mnas.store.experiment import Experiment

    overrides = {k: v for k, v in {"trials": trials, "strategy.name": strategy, "seed": seed}.items()
                 if v is not None}
    cfg = load_config(config, overrides)
    exp = Experiment(cfg, out, resume=resume)
    cfg, t = exp.cfg, exp.target_ms  # on --resume, the stored config
    console.print(f"[bold]{cfg.name}[/]: strategy {cfg.strategy.name}, space {exp.space.name} "
                  f"({exp.space.size:.2e} archs), latency on {cfg.latency.backend} @ {cfg.latency.resolution}px, "
                  f"T = {f'{t:.2f} ms' if t else 'none'}, proxy {cfg.proxy.dataset} @ {cfg.proxy.resolution}px")
    try:
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            task = bar.add_task("search", total=cfg.trials)

            def show(state) -> None:
                b = state.best
                best = (f"best reward {b['reward']:.4f} acc {b['accuracy']:.3f} lat {b['latency_ms']:.2f} ms"
                        if b else "no result yet")
                bar.update(task, completed=state.completed + state.failed,
                           description=f"trials (failed {state.failed}, dup {state.duplicates}) | {best}")

            state = exp.run(retry_failed=retry_failed, progress=show)
    finally:
        exp.store.close()
    console.print(f"stopped: {state.stopped_because}; {state.completed} completed, {state.failed} failed")
    _show_top(out, 5)


def _show_top(out: Path, k: int) -> None:
    from mnas.store import Store

    with Store(out, create=False) as store:
        done = sorted(store.trials("completed"), key=lambda t: -(t.reward or 0))[:k]
    rows = [[i + 1, t.id, f"{t.reward:.4f}", f"{t.accuracy:.3f}", f"{t.latency_ms:.2f}",
             f"{(t.params or 0) / 1e6:.2f}M", t.arch] for i, t in enumerate(done)]
    console.print(table(f"top {k} of {out}", ["rank", "trial", "reward", "accuracy", "latency ms", "params",
                                                 "architecture"], rows))


@app.command("trials")
def trials_cmd(out: Path = typer.Argument(..., help="experiment directory"),
               json: bool = typer.Option(False, "--json")) -> None:
    """Every trial of an experiment."""
    from mnas.store import Store

    with Store(out, create=False) as store:
        records = store.trials()
    if json:
        print_json([{"id": t.id, "arch": t.arch, "status": t.status, "accuracy": t.accuracy,
                     "latency_ms": t.latency_ms, "reward": t.reward, "params": t.params, "macs": t.macs,
                     "error": t.error, "worker": t.worker, "attempts": t.attempts, "seconds": t.seconds}
                    for t in records])
        return
    rows = [[t.id, t.status, _f(t.reward, 4), _f(t.accuracy, 3), _f(t.latency_ms, 2), t.error or t.arch]
            for t in records]
    console.print(table(str(out), ["id", "status", "reward", "accuracy", "latency ms", "arch / error"], rows))


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
