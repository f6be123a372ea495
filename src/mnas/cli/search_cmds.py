"""``mnas search`` and ``mnas trials``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from mnas.cli.app import app
from mnas.cli.output import console, print_json, table
from mnas.cli.progress import progress_bar


@app.command("search")
def search(config: Path = typer.Option(..., "--config", "-c", help="experiment YAML (see configs/)"),
           out: Path = typer.Option(..., "--out", "-o", help="experiment directory: a new or empty one, or the "
                                    "one to --resume (one search at a time)"),
           resume: bool = typer.Option(False, "--resume", help="continue the experiment in --out"),
           retry_failed: bool = typer.Option(False, "--retry-failed", help="re-run failed trials"),
           trials: Optional[int] = typer.Option(None, "--trials", min=1, help="total trial budget"),
           strategy: Optional[str] = typer.Option(None, "--strategy", help="ppo, random, evolution, ..."),
           seed: Optional[int] = typer.Option(None, "--seed")) -> None:
    """Run (or resume) a platform-aware search."""
    from mnas.search.config import load_config
    from mnas.search.driver import Search

    overrides = {k: v for k, v in {"trials": trials, "strategy.name": strategy, "seed": seed}.items()
                 if v is not None}
    run = Search.open(load_config(config, overrides), out, resume=resume)
    cfg, t = run.cfg, run.target_ms  # on --resume, the stored config
    console.print(f"[bold]{cfg.name}[/]: strategy {cfg.strategy.name}, space {run.space.name} "
                  f"({run.space.size:.2e} archs), latency on {cfg.latency.backend} @ {cfg.latency.resolution}px, "
                  f"T = {f'{t:.2f} ms' if t else 'none'}, proxy {cfg.proxy.dataset} @ {cfg.proxy.resolution}px")
    try:
        with progress_bar("search", total=cfg.trials) as update:
            def show(state) -> None:
                b = state.best
                best = (f"best reward {b.reward:.4f} acc {b.accuracy:.3f} lat {b.latency_ms:.2f} ms"
                        if b else "no result yet")
                update(state.completed + state.failed,
                       description=f"trials (failed {state.failed}, dup {state.duplicates}) | {best}")

            state = run.run(retry_failed=retry_failed, progress=show)
    finally:
        run.close()
    console.print(f"stopped: {state.stopped_because}; {state.completed} completed, {state.failed} failed")
    _show_top(out, 5)


def _show_top(out: Path, k: int) -> None:
    from mnas.store import Store
    from mnas.store.query import ranked_trials

    with Store(out, readonly=True) as store:
        done = ranked_trials(store, k)
    rows = [[i + 1, t.id, _f(t.reward, 4), f"{t.accuracy:.3f}", f"{t.latency_ms:.2f}",
             f"{(t.params or 0) / 1e6:.2f}M", t.arch] for i, t in enumerate(done)]
    console.print(table(f"top {k} of {out}", ["rank", "trial", "reward", "accuracy", "latency ms", "params",
                                                 "architecture"], rows))


@app.command("trials")
def trials_cmd(out: Path = typer.Argument(..., help="experiment directory"),
               json: bool = typer.Option(False, "--json")) -> None:
    """Every trial of an experiment."""
    from mnas.store import Store

    with Store(out, readonly=True) as store:
        records = store.trials()
    if json:
        fields = ("id", "arch", "status", "accuracy", "latency_ms", "reward", "params", "macs", "error",
                  "worker", "attempts", "seconds")
        print_json([{k: v for k, v in t.to_dict().items() if k in fields} for t in records])
        return
    rows = [[t.id, t.status, _f(t.reward, 4), _f(t.accuracy, 3), _f(t.latency_ms, 2), t.error or t.arch]
            for t in records]
    console.print(table(str(out), ["id", "status", "reward", "accuracy", "latency ms", "arch / error"], rows))


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
