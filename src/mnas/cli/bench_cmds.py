"""``mnas bench strategies``: search strategies against a tabular benchmark, many seeds, seconds."""

from __future__ import annotations

import json as _json
import logging
from pathlib import Path
from typing import Optional

import typer

from mnas import MnasError
from mnas.schema import check_bounded
from mnas.cli.output import console, print_json, table
from mnas.cli.progress import progress_bar
from mnas.search.loop import DUPLICATE_STREAK

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

log = logging.getLogger(__name__)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks.")
app.add_typer(bench_app, name="bench")

# The NAS-Bench-201 table ships in the repository (benchmarks/data/README.md says why and where from), not
# in the wheel: it is the default only in a source checkout, where src/mnas sits beside benchmarks/.
REPO_TABLE = Path(__file__).resolve().parents[3] / "benchmarks" / "data" / "nb201_cifar10_pixel3.csv.gz"


def _parse_sets(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        strat, dot, opt = key.partition(".")
        if not sep or not dot or not opt:
            raise MnasError(f"--set {item!r}: expected STRATEGY.OPTION=VALUE, e.g. ppo.lr=0.01")
        try:
            parsed = _json.loads(value)
        except RecursionError:
            raise MnasError(f"--set {key}: nested too deeply: flatten it") from None
        except ValueError:
            parsed = value
        check_bounded(parsed, f"--set {key}")  # finite numbers (JSON's NaN, Infinity refused), bounded size
        out.setdefault(strat, {})[opt] = parsed
    return out


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MnasError(f"{what} {text!r}: expected integers separated by commas") from None
    if not values or min(values) < 1:
        raise MnasError(f"{what} {text!r}: need positive integers")
    return values


@bench_app.command("strategies")
def bench_strategies_cmd(
    table_spec: Optional[str] = typer.Option(
        None, "--table", metavar="CSV|generated:FAMILY:SEED",
        help="CSV or .csv.gz with an arch column (NAS-Bench-201 cells), or a table generated from a seed: "
        "generated:FAMILY:SEED (families: positive, negative, independent, heavy-tail, flat-top, missing) or "
        "generated:SEED; default: benchmarks/data/nb201_cifar10_pixel3.csv.gz of a source checkout"),
    accuracy: Optional[str] = typer.Option(
        None, "--accuracy", help="accuracy column, scored (default: the one ending _accuracy, not _valid_accuracy)"),
    valid_accuracy: Optional[str] = typer.Option(
        None, "--valid-accuracy", help="validation accuracy column, searched on (default: the one ending "
        "_valid_accuracy, if any; without one, strategies are told the scored accuracy)"),
    latency: Optional[str] = typer.Option(None, "--latency", help="latency column (default: the one ending _latency_ms)"),
    space: Optional[str] = typer.Option(
        None, "--space", help="the space of a CSV's arch column: a space name or YAML (default: NAS-Bench-201 "
        "cells); a table of a supernet's space: mnas supernet table"),
    budget: str = typer.Option("200", "--budget", help="distinct evaluations per search; several: 200,500"),
    seeds: int = typer.Option(30, "--seeds", min=1),
    reward_preset: str = typer.Option("soft", "--reward", help="soft or hard"),
    target_quantile: Optional[float] = typer.Option(
        None, "--target-quantile", help="T = this quantile of the table's latencies (default: a generated "
        "table's own, else 0.25)"),
    strategies: str = typer.Option("random,evolution,ppo,ppo-screened,predictor,optuna-tpe,optuna-nsga2",
                                   "--strategies"),
    sets: list[str] = typer.Option([], "--set", help="STRATEGY.SETTING=VALUE, e.g. ppo.lr=0.01 (repeatable)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="worker processes (default: all cores)"),
    max_duplicate_streak: int = typer.Option(
        DUPLICATE_STREAK, "--max-duplicate-streak", min=1,
        help="stop a search after this many proposals in a row that were all evaluated before (as a search does)"),
    max_ask_factor: Optional[int] = typer.Option(None, "--max-ask-factor", min=1, hidden=True,
                                                 help="deprecated, ignored: see --max-duplicate-streak"),
    latency_oracle: bool = typer.Option(True, "--latency-oracle/--no-latency-oracle",
                                        help="let strategies that can use it read candidates' latency first"),
    # the defaults live in mnas.search.bench.runner (not imported here: numpy stays out of the CLI's start)
    latency_cost: Optional[float] = typer.Option(
        None, "--latency-cost", min=0.0,
        help="price of one latency query in trainings (default 0.001, measured on onnxruntime; "
        "LiteRT-like: 0.05; docs/strategies.md)"),
    latency_noise: Optional[float] = typer.Option(
        None, "--latency-noise", min=0.0,
        help="multiplicative noise of a measured latency, sigma of its log (default 0.03, measured)"),
    json: bool = typer.Option(False, "--json"),
) -> None:
    """Reward regret, hypervolume ratio and constrained regret per strategy, with p-values vs random
    (and vs evolution in --json), at equal trainings and at equal total cost (trainings + latency queries
    at --latency-cost each)."""
    from mnas.search.bench import Oracle, bench_strategies, open_table
    from mnas.search.bench.runner import LATENCY_COST, LATENCY_NOISE

    latency_cost = LATENCY_COST if latency_cost is None else latency_cost
    latency_noise = LATENCY_NOISE if latency_noise is None else latency_noise

    if max_ask_factor is not None:
        log.warning("--max-ask-factor is deprecated and ignored: a benchmark search stops as a real one does, "
                    "after --max-duplicate-streak repeated proposals in a row")
    if table_spec is None:
        if not REPO_TABLE.is_file():
            raise MnasError("give --table: the default NAS-Bench-201 table is in mnas's source repository "
                            "(benchmarks/data/), not in the installed package")
        table_spec = str(REPO_TABLE)
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    budgets = _ints(budget, "--budget")
    options = _parse_sets(sets)  # before the table is read: a bad value fails at once
    if reward_preset not in ("soft", "hard"):
        raise MnasError(f"--reward {reward_preset!r}: expected soft or hard")
    oracle = Oracle.build(open_table(table_spec, accuracy, latency, valid_accuracy, space), reward_preset,
                          target_quantile)
    with progress_bar("searches", total=len(names) * seeds, transient=True) as update:
        report = bench_strategies(oracle, names, budgets, seeds, options, jobs, max_duplicate_streak,
                                  progress=update, latency_oracle=latency_oracle, latency_cost=latency_cost,
                                  latency_noise=latency_noise)
    if json:
        print_json(report)
        return
    r = report["reward"]
    source = report["table"]["source"]
    # a generated table's defining parameters (all of them are in --json's table.source)
    made = ", ".join(f"{k} {source[k]}" for k in ("landscape", "rho", "tail", "missing") if k in source)
    valid = report["table"]["valid_accuracy"]
    searched = f"searched on {valid}, scored on {report['table']['accuracy']}; " if valid else ""
    console.print(f"table {table_spec} ({report['table']['rows']} rows{'; ' + made if made else ''}); {searched}"
                  f"reward {r['preset']} (alpha {r['alpha']}, beta {r['beta']}), "
                  f"T = {r['target_ms']:.4g} ms ({r['target_quantile']:g} quantile); "
                  f"{seeds} seeds; latency query = {latency_cost:g} trainings, noise {latency_noise:g}; "
                  f"{report['wall_s']:.1f} s on {report['jobs']} processes")

    def fmt(m: dict) -> str:
        p = m.get("p_vs_random")
        return f"{m['mean']:.4g} ± {m['std']:.2g}" + (f" (p={p:.2g})" if p is not None else "")

    for key, title in (("budgets", "budget {} trainings"), ("cost_budgets", "total cost {} trainings")):
        for b, block in report[key].items():
            rows = [[s, f"{e['evaluations_mean']:.0f}", f"{e['latency_queries_mean']:.0f}",
                     f"{e['total_cost_mean']:.0f}", fmt(e["reward_regret"]), fmt(e["hv_ratio"]),
                     fmt(e["constrained_regret"])] for s, e in block.items()]
            console.print(table(title.format(b), ["strategy", "evals", "latency queries", "total cost",
                                                  "reward_regret", "hv_ratio", "constrained_regret"], rows))
