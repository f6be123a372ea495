"""``mnas search`` and ``mnas trials``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from mnas import MnasError
from mnas.cli.output import configure_logging
from mnas.cli.output import (ARCH_HINT, ARCH_WIDTH, console, deprecated_option, print_json, ranked_table, table,
                             wide_console)
from mnas.cli.overrides import parse_sets
from mnas.cli.progress import progress_bar
from mnas.run.trial import phases

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app


@app.command("search")
def search(experiment: Optional[Path] = typer.Argument(None, metavar="EXPERIMENT", help="experiment directory: a "
                                                       "new or empty one, or the one to --resume (one search at a "
                                                       "time); the EXPERIMENT of mnas report, retrain, export"),
           config: Path = typer.Option(..., "--config", "-c", help="experiment YAML (see configs/)"),
           out: Optional[Path] = typer.Option(None, "--out", "-o", hidden=True, help="deprecated: EXPERIMENT"),
           resume: bool = typer.Option(False, "--resume", help="continue the experiment in EXPERIMENT"),
           retry_failed: bool = typer.Option(False, "--retry-failed", help="re-run failed trials"),
           trials: Optional[int] = typer.Option(None, "--trials", min=1, help="total trial budget"),
           strategy: Optional[str] = typer.Option(None, "--strategy", help="ppo, random, evolution, ..."),
           seed: Optional[int] = typer.Option(None, "--seed"),
           sets: List[str] = typer.Option([], "--set", help="KEY=VALUE config override, dotted keys, YAML values "
                                          "(repeatable): --set proxy.epochs=2 --set latency.backend=openvino"),
           dry_run: bool = typer.Option(False, "--dry-run", help="validate, run the start-up checks, resolve T, "
                                        "print the plan; run no trial and write nothing"),
           json: bool = typer.Option(False, "--json", help="with --dry-run: the plan as JSON")) -> None:
    """Run (or resume) a platform-aware search."""
    from mnas.search.config import load_config
    from mnas.search.driver import Search

    overrides = {k: v for k, v in {"trials": trials, "strategy.name": strategy, "seed": seed}.items()
                 if v is not None}
    overrides.update(parse_sets(sets))
    if experiment is not None and out is not None and experiment != out:
        raise MnasError(f"two experiment directories: EXPERIMENT {experiment} and --out {out}; give one")
    out = deprecated_option("--out", out, "the positional EXPERIMENT", experiment)
    cfg = load_config(config, overrides)
    if dry_run:
        return _dry_run(cfg, json)
    if out is None:
        raise MnasError("give the experiment directory: mnas search EXPERIMENT --config FILE")
    if not sys.stdout.isatty():  # nohup, a cluster job: a log line per finished trial instead of a bar,
        # on stdout with the rest of the search's output (stderr keeps only errors: one line each)
        level = min(logging.getLogger("mnas").getEffectiveLevel(), logging.INFO)
        configure_logging(logging.getLevelName(level).lower(), stream=sys.stdout)
    run = Search.open(cfg, out, resume=resume)
    cfg, t = run.cfg, run.target_ms  # on --resume, the stored config
    beside = " (each trial timed beside T's model)" if run.latency_job.reference else ""
    console.print(f"[bold]{cfg.name}[/]: strategy {cfg.strategy.name}, space {run.space.name} "
                  f"({run.space.size:.2e} archs), latency on {cfg.latency.backend} @ {cfg.latency.resolution}px, "
                  f"T = {f'{t:.2f} ms' if t else 'none'}{beside}, proxy {cfg.proxy.dataset} @ {cfg.proxy.resolution}px")
    try:
        _score_references(run)
        with progress_bar("search", total=cfg.trials) as update:
            bar = _SearchBar(update, run)
            with phases(bar.on_phase):
                state = run.run(retry_failed=retry_failed, progress=bar.on_state)
    finally:
        run.close()
    pruned = f", {state.pruned} pruned" if state.pruned else ""
    console.print(f"stopped: {state.stopped_because}; {state.completed} completed, {state.failed} failed{pruned}")
    _show_top(out, 5)


class _SearchBar:
    """The search bar's line: trials done, what each running trial is doing (measuring, training), the best."""

    def __init__(self, update, run) -> None:
        self.update, self.run = update, run
        self.state, self.running = None, {}

    def on_state(self, state) -> None:
        self.state = state
        self._draw()

    def on_phase(self, trial_id: int, phase: str) -> None:
        if phase == "done":
            self.running.pop(trial_id, None)
        else:
            self.running[trial_id] = phase
        self._draw()

    def _draw(self) -> None:
        st = self.state
        b = st.best if st else None
        best = f"best reward {b.reward:.4f} acc {b.accuracy:.3f} lat {b.latency_ms:.2f} ms" if b else "no result yet"
        # trials in this process say their phase; those on Ray workers are counted as in flight
        now = ", ".join(f"trial {k} {v}" for k, v in sorted(self.running.items())) or \
            f"{self.run.executor.in_flight() if self.run.executor else 0} in flight"
        self.update(st.completed + st.failed + st.pruned if st else 0,
                    description=f"failed {st.failed if st else 0}, dup {st.duplicates if st else 0} | {now} | {best}")


def _score_references(run) -> None:
    """With references.score: the reference models trained on the proxy first, a line each (on a terminal;
    piped, the log says the same), then one line of what they cost, outside the trial budget."""
    tty = sys.stdout.isatty()
    refs = run.score_references(announce=(lambda line: console.print(line, markup=False, highlight=False))
                                if tty else None)
    scored = [r for r in refs if "seconds" in r]
    if run.cfg.references.score and scored:
        failed = sum(1 for r in scored if r.get("error"))
        console.print(f"references: {len(scored)} scored on the proxy in {sum(r['seconds'] for r in scored):.0f} s"
                      f"{f', {failed} failed' if failed else ''} (not trials: outside the strategy's trial and "
                      "time budget)", markup=False, highlight=False)


def _dry_run(cfg, json: bool) -> None:
    """What ``mnas search`` would do, checked as far as it can be without running a trial."""
    from mnas.run import LatencyJob
    from mnas.run.trial import measure_latency
    from mnas.search.checks import preflight
    from mnas.space import load_space, resolve_arch

    preflight(cfg)
    target = cfg.reward.target_ms
    if target is None and cfg.reward.target_model:
        _, arch = resolve_arch(cfg.reward.target_model)
        target = measure_latency(arch.canonical, LatencyJob.from_config(cfg.latency, None)).latency_ms
    space = load_space(cfg.space)
    plan = {"config": cfg.resolved(), "space": {"name": space.name, "size": space.size},
            "target_ms": target, "budget": {"trials": cfg.trials, "time_budget_s": cfg.time_budget_s},
            "checks": "passed: backend, device, dataset, model memory"}
    if json:
        print_json(plan)
        return
    console.print(f"[bold]{cfg.name}[/] (dry run, nothing written): strategy {cfg.strategy.name}, space {space.name} "
                  f"({space.size:.2e} archs), latency on {cfg.latency.backend} @ {cfg.latency.resolution}px, "
                  f"T = {f'{target:.2f} ms' if target else 'none'}, proxy {cfg.proxy.dataset} @ "
                  f"{cfg.proxy.resolution}px, budget {cfg.trials} trials / {cfg.time_budget_s} s; checks passed")


def _show_top(out: Path, k: int) -> None:
    """The top of ``mnas report``'s tables, the same table: one look for ranked trials."""
    from mnas.store import Store
    from mnas.store.query import ranked_trials

    with Store(out, readonly=True) as store:
        done = ranked_trials(store, k)
    items = [{"rank": i + 1, "id": t.id, "accuracy": t.accuracy, "latency_ms": t.latency_ms, "reward": t.reward,
              "params": t.params, "macs": t.macs, "arch": t.arch} for i, t in enumerate(done)]
    wide = wide_console()
    cut = wide.is_terminal
    wide.print(ranked_table(f"top {len(items)} architectures by reward", items, cut))
    if cut and any(len(t.arch) > ARCH_WIDTH for t in done):
        wide.print(ARCH_HINT.format(json=f"mnas report {out} --json"), markup=False, highlight=False)


@app.command("trials")
def trials_cmd(out: Path = typer.Argument(..., metavar="EXPERIMENT", help="experiment directory"),
               json: bool = typer.Option(False, "--json")) -> None:
    """Every trial of an experiment."""
    from mnas.store import Store

    with Store(out, readonly=True) as store:
        records = store.trials()
    if json:
        fields = ("id", "arch", "status", "accuracy", "latency_ms", "reward", "params", "macs", "error",
                  "worker", "attempts", "seconds", "latency_ratio", "latency_abs_ms", "retimed_ms")
        print_json([{k: v for k, v in t.to_dict().items() if k in fields} for t in records])
        return
    from rich.text import Text

    # architectures: whole on one line when piped, cut to one line on a terminal; errors always whole
    rows = [[t.id, t.status, _f(t.reward, 4), _f(t.accuracy, 3), _f(t.latency_ms, 2),
             Text(t.error, overflow="fold", no_wrap=False) if t.error else t.arch] for t in records]
    wide = wide_console()
    wide.print(table(str(out), ["id", "status", "reward", "accuracy", "latency ms", "arch / error"], rows,
                     cut_last=wide.is_terminal))
    if wide.is_terminal and any(len(t.arch) > ARCH_WIDTH for t in records if not t.error):
        wide.print(ARCH_HINT.format(json=f"mnas trials {out} --json"), markup=False, highlight=False)


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
