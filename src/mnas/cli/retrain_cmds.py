"""``mnas retrain EXPERIMENT``: the search's best architectures and reference models trained in full, side by side."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from mnas import MnasError
from mnas.cli.output import console, deprecated_option, print_json, table
from mnas.cli.progress import progress_bar
from mnas.cli.overrides import parse_sets
from mnas.retrain.config import RetrainConfig
from mnas.train.config import TrainConfig

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app


@app.command("retrain")
def retrain(directory: Path = typer.Argument(..., metavar="EXPERIMENT", help="experiment directory (mnas search "
                                            "EXPERIMENT)"),
            top: int = typer.Option(RetrainConfig.default("top"), "--top", min=0,
                                    help=RetrainConfig.model_fields["top"].description),
            trial_ids: Optional[str] = typer.Option(None, "--trial-ids", help="more trial ids, comma-separated "
                                                    "(e.g. a latency-spanning set to measure the proxy's ranking)"),
            old_trials: Optional[str] = typer.Option(None, "--trials", hidden=True, help="renamed: --trial-ids"),
            spread_n: int = typer.Option(RetrainConfig.default("spread"), "--spread", min=0,
                                         help=RetrainConfig.model_fields["spread"].description),
            references: Optional[str] = typer.Option(
                None, "--references", help="zoo models NAME[@WIDTH], comma-separated; 'none' for none (default: "
                f"the space's: {','.join(RetrainConfig.default('references'))}; in a stride-1-stem space "
                f"{','.join(RetrainConfig.default('cifar_references'))})"),
            recipe: str = typer.Option(RetrainConfig.default("recipe"), "--recipe",
                                       help=RetrainConfig.model_fields["recipe"].description),
            preset: Optional[str] = typer.Option(None, "--preset", hidden=True, help="deprecated: --recipe"),
            epochs: Optional[float] = typer.Option(None, "--epochs", help="default: the recipe's"),
            dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="default: the search's proxy "
                                                  "dataset, evaluated on its own test/val split"),
            cache: Optional[str] = typer.Option(None, "--cache", help="a data cache folder (default for an "
                                                "image folder: EXPERIMENT/retrain/data-<res>px)"),
            threads: int = typer.Option(TrainConfig.default("threads"), "--threads", min=1,
                                        help="torch threads per training"),
            device: str = typer.Option(TrainConfig.default("device"), "--device",
                                       help=TrainConfig.model_fields["device"].description),
            sets: List[str] = typer.Option([], "--set", help="KEY=VALUE recipe override (TrainConfig field), "
                                           "e.g. --set lr=0.05 (repeatable)"),
            measure: bool = typer.Option(True, "--measure/--no-measure", help="time each model with the "
                                         "search's latency settings before it trains"),
            dry_run: bool = typer.Option(False, "--dry-run", help="list what would be trained and what is done"),
            score_proxy: bool = typer.Option(False, "--score-proxy", help="train nothing in full: give every "
                                             "recorded reference the search's own proxy accuracy (it then counts "
                                             "in the proxy's Kendall tau)"),
            remeasure: bool = typer.Option(False, "--remeasure", help="train nothing: time every recorded model "
                                           "of this recipe afresh (run it on a quiet machine, twice)"),
            json: bool = typer.Option(False, "--json")) -> None:
    """Train the top-K searched architectures and reference models under one recipe (resumable)."""
    from mnas.retrain.workflow import retrain as run_retrain

    if old_trials is not None:  # in mnas search --trials is a budget: one name, one meaning
        raise MnasError(f"retrain takes trial ids as --trial-ids {old_trials} (--trials is a search's budget)")
    recipe = deprecated_option("--preset", preset, "--recipe", recipe)
    ids = [_trial_id(t) for t in (trial_ids or "").split(",") if t.strip()]
    refs = None if references is None else [] if references.strip().lower() in ("", "none") else \
        [r for r in references.split(",") if r.strip()]
    overrides = {**parse_sets(sets), "threads": threads, "device": device}
    if epochs is not None:
        overrides["epochs"] = epochs

    def event(kind: str, row) -> None:
        if json:
            return
        if kind == "proxy":
            console.print(f"{row.label}: proxy accuracy {row.proxy_accuracy:.4f}")
        elif kind == "timed":
            runs = ", ".join(f"{r['latency_ms']:.3f}" for r in row.data["latency_runs"])
            console.print(f"{row.label}: {row.latency_ms:.3f} ms median (all timings: {runs} ms; load "
                          f"{row.data['latency_runs'][-1]['load']})")
        elif kind == "skip":
            console.print(f"{row.label}: done already (top-1 {row.top1:.4f}), skipped")
        elif kind == "start":
            lat = f"{row.latency_ms:.3f} ms" if row.latency_ms is not None else "latency not measured"
            console.print(f"{row.label}: {lat}; training into {row.checkpoint}")
        else:
            console.print(f"{row.label}: {row.status}, top-1 {row.top1 or 0:.4f} after {row.epochs} epochs"
                          + (f" ({row.error})" if row.error else ""))

    with progress_bar("training", detail="loss {task.fields[loss]}") as update:
        rows = run_retrain(directory, top=top, trial_ids=ids, references=refs, recipe=recipe, dataset=dataset,
                           cache=cache, overrides=overrides, measure=measure, event=event, dry_run=dry_run,
                           remeasure=remeasure, spread_n=spread_n, score_proxy=score_proxy,
                           progress=lambda step, total, loss: update(step, total, loss=f"{loss:.3f}"))
    rows = [asdict(r) if dry_run else r.to_dict() for r in rows]
    if json:
        print_json([{k: v for k, v in r.items() if k != "data"} for r in rows])
        return
    console.print(table(f"retrained in {directory}" + (" (dry run)" if dry_run else ""),
                        ["model", "kind", "latency ms", "params M", "proxy acc", "top-1", "epochs", "status"],
                        [[r["label"], r["kind"], _num(r.get("latency_ms"), ".3f"),
                          _num(r.get("params") and r["params"] / 1e6, ".2f"), _num(r.get("proxy_accuracy"), ".4f"),
                          _num(r.get("top1"), ".4f"), str(r.get("epochs") or ""), r["status"]] for r in rows]))
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


def _trial_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MnasError(f"--trial-ids {text!r}: expected trial ids separated by commas, e.g. --trial-ids 3,17,42") \
            from None


def _num(v, fmt: str) -> str:
    return "" if v is None else format(v, fmt)
