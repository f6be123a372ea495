"""``mnas train NAME|STRING --dataset D``, ``mnas train EXPERIMENT --rank K|--trial ID``,
``mnas data list``, ``mnas data show``, ``mnas data cache``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from mnas import MnasError
from mnas.cli.output import configure_logging, console, deprecated_option, print_json, table
from mnas.cli.progress import LINES_EVERY_S, progress_bar, progress_lines, tenths
from mnas.train import TrainTask, TrainConfig
from mnas.train.recipes import BASE, RECIPES
from mnas.retrain.winner import DEPLOYED_RECIPE, is_experiment, trial_training

log = logging.getLogger(__name__)

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

data_app = typer.Typer(no_args_is_help=True, help="Proxy-task datasets.")
app.add_typer(data_app, name="data")


def _option(field: str, *names: str) -> Any:
    """A typer option whose default and help come from the schema's field."""
    help_text = TrainTask.model_fields[field].description or ""
    if field in BASE:
        help_text = f"{help_text}; default: the recipe's" if help_text else "default: the recipe's"
    # the schema's inclusive bounds checked by the option too: commands that build no TrainTask (mnas data)
    # pass the value straight on (a seed of -1 was a numpy traceback)
    bounds = {type(m).__name__: m for m in TrainTask.model_fields[field].metadata}
    limits = {k: getattr(bounds[m], a) for k, m, a in (("min", "Ge", "ge"), ("max", "Le", "le")) if m in bounds}
    return typer.Option(TrainTask.default(field), *names, help=help_text, **limits)


def _holdout_option() -> Any:
    return typer.Option(None, "--holdout", help=TrainTask.model_fields["holdout"].description)


def _count_or_fraction(text: str | None) -> int | float | None:
    """``--holdout 5000`` is a count, ``--holdout 0.1`` a fraction (the schema checks the range)."""
    if text is None:
        return None
    try:
        return int(text) if text.strip().isdigit() else float(text)
    except ValueError:
        raise MnasError(f"--holdout {text!r}: expected a count or a fraction") from None


@app.command("train")
def train(name: str = typer.Argument(..., help="zoo name (or NAME@WIDTH), canonical string, TPU/timm block strings, or "
                                     "an experiment directory (its trial at --rank / --trial, as deployed)"),
          rank: Optional[int] = typer.Option(None, "--rank", min=1, help="with EXPERIMENT: the trial at this rank "
                                             "(1, the default: the highest reward)"),
          trial: Optional[int] = typer.Option(None, "--trial", min=1, help="with EXPERIMENT: the trial with this "
                                              "id (mnas trials) instead of a rank"),
          dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="NAME or NAME:PATH (mnas data "
                                                f"list); default: {TrainTask.default('dataset')}, or with "
                                                "EXPERIMENT the search's"),
          recipe: Optional[str] = typer.Option(None, "--recipe", help=f"the training recipe: {' | '.join(RECIPES)}; "
                                               f"default: {TrainTask.default('recipe')}, or with EXPERIMENT "
                                               f"{DEPLOYED_RECIPE} (full training)"),
          preset: Optional[str] = typer.Option(None, "--preset", hidden=True, help="deprecated: --recipe"),
          epochs: Optional[float] = _option("epochs", "--epochs"),
          resolution: Optional[int] = _option("resolution", "--resolution"),
          width_multiplier: Optional[float] = _option("width_multiplier", "--width-multiplier", "-w"),
          batch_size: Optional[int] = _option("batch_size", "--batch-size"),
          optimizer: Optional[str] = _option("optimizer", "--optimizer"),
          lr: Optional[float] = _option("lr", "--lr"),
          seed: int = _option("seed", "--seed"),
          holdout: Optional[str] = _holdout_option(),
          cache: Optional[str] = _option("cache", "--cache"),
          workers: int = _option("workers", "--workers"),
          threads: int = _option("threads", "--threads"),
          device: str = _option("device", "--device"),
          amp: str = _option("amp", "--amp"),
          compile_model: bool = _option("compile", "--compile/--no-compile"),
          init: Optional[str] = _option("init", "--init"),
          into: Optional[Path] = typer.Option(None, "--dir", help="a folder to train into: a checkpoint after "
                                              "every epoch (last.pt, best.pt), history.json/.csv"),
          out: Optional[Path] = typer.Option(None, "--out", "-o", hidden=True, help="deprecated: --dir"),
          resume: bool = typer.Option(False, "--resume", help="continue the training in --dir from its last "
                                      "epoch"),
          json: bool = typer.Option(False, "--json")) -> None:
    """Train an architecture and report validation top-1; with --dir, checkpointed and resumable. With an
    experiment directory: its trial at --rank (default 1) or --trial, as deployed (width 1.0, the search's
    dataset, the resolution its latency was measured at, a full-training recipe)."""
    from mnas.train import load_proxy_data, train_proxy

    recipe = deprecated_option("--preset", preset, "--recipe", recipe)
    out = deprecated_option("--out", out, "--dir", into)
    given = dict(dataset=dataset, recipe=recipe, epochs=epochs, resolution=resolution,
                 width_multiplier=width_multiplier, batch_size=batch_size, optimizer=optimizer, lr=lr,
                 seed=seed, holdout=_count_or_fraction(holdout), cache=cache, workers=workers,
                 threads=threads, device=device, amp=amp, compile=compile_model, init=init)
    if is_experiment(name):
        chosen = trial_training(name, rank, trial, **given)
        label, arch, cfg = chosen.label, chosen.arch, chosen.task
    else:
        if rank is not None or trial is not None:
            raise MnasError(f"--rank and --trial pick a trial of an experiment: {name[:60]!r} is not an experiment "
                            "directory (mnas train EXPERIMENT --rank 1)")
        label, arch, cfg = _named_training(name, given)
    if resume and out is None:
        raise MnasError("--resume continues a training in a folder: give it with --dir DIR")
    if not sys.stdout.isatty():  # a log file, a cluster job: progress as log lines (the bar draws only on a
        # terminal), each epoch as it ends; on stdout with the rest, or on stderr beside --json's document
        level = min(logging.getLogger("mnas").getEffectiveLevel(), logging.INFO)
        configure_logging(logging.getLevelName(level).lower(), stream=sys.stderr if json else sys.stdout)
    if not json:  # what is trained, before the data loads (--json: the same fields in the result)
        print(f"training {label} at width {cfg.width_multiplier:g}, {cfg.resolution} px, on {cfg.dataset} "
              f"(recipe {cfg.recipe}, {cfg.epochs:g} epochs)", flush=True)
    if out is not None:
        from mnas.train.folder import TrainFolder

        # the folder is checked and locked before the data loads: a file, a --resume of nothing or a
        # folder in use is refused at once
        with TrainFolder.claim(out, resume, strict=True) as folder:
            _train_into(label, arch, load_proxy_data(cfg, cfg.seed), cfg, folder, resume, json)
        return
    data = load_proxy_data(cfg, cfg.seed)
    # a log (stdout not a terminal, see above): a line each tenth of the steps and every LINES_EVERY_S
    say = progress_lines("training", LINES_EVERY_S, at=tenths, emit=log.info)
    with progress_bar("training", detail="loss {task.fields[loss]}") as update:
        def on_step(step: int, total: int, loss: float) -> None:
            update(step, total, loss=f"{loss:.3f}")
            say(step, total, loss=f"{loss:.4f}")

        r = train_proxy(arch, data, cfg, progress=on_step)
    info = {"name": label, **r.to_dict(), "train": data.n_train, "val": data.n_val,
            "resolution": cfg.resolution, "width_multiplier": cfg.width_multiplier,
            "batch_size": cfg.batch_size, "recipe": cfg.recipe}
    if json:
        print_json(info)
    else:
        rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in info.items()
                if k not in ("config", "loss_curve", "arch", "split")]
        rows.append(["loss_curve", " ".join(f"{v:.3f}" for v in r.loss_curve)])
        console.print(table(f"train {label} on {data.name}", ["field", "value"], rows))
    if not r.ok:
        raise typer.Exit(1)


def _named_training(name: str, given: dict[str, Any]) -> tuple[str, Any, TrainTask]:
    """A zoo name (``NAME@WIDTH``: at that width), a canonical string or block strings, and its task."""
    from mnas.space import resolve_arch, split_width

    if split_width(name)[1] is None:
        label, arch = resolve_arch(name, 1.0)  # the config applies the width multiplier
    else:  # NAME@WIDTH is the width it trains at; a --width-multiplier besides it is refused
        label, arch = resolve_arch(name, given.get("width_multiplier") or 1.0)
        given = {**given, "width_multiplier": 1.0}
    return label, arch, TrainTask(**given)


def _train_into(label: str, arch, data, cfg: TrainTask, folder, resume: bool, json: bool) -> None:
    from mnas.train.full import train_full

    out = folder.path
    with progress_bar(f"training {label}", detail="loss {task.fields[loss]}") as update:
        r = train_full(arch, data, cfg, out, name=label, resume=resume,
                       progress=lambda step, total, loss: update(step, total, loss=f"{loss:.3f}"), folder=folder)
    if json:
        print_json({**r.to_dict(), "name": label, "dataset": cfg.dataset, "resolution": cfg.resolution,
                    "width_multiplier": cfg.width_multiplier, "recipe": cfg.recipe})
    else:
        rows = [[h["epoch"], f"{h['train_loss']:.4f}", f"{h['val_top1']:.4f}", f"{h['val_loss']:.4f}",
                 f"{h['lr']:.4g}", f"{h['seconds']:.0f}"] for h in r.history]
        console.print(table(f"train {label} on {data.name} -> {out}",
                            ["epoch", "train loss", "val top-1", "val loss", "lr", "seconds"], rows))
        console.print(f"{r.epochs}/{r.total_epochs} epochs; last top-1 {r.top1:.4f}, best {r.best_top1:.4f} "
                      f"(epoch {r.best_epoch}); checkpoints in {out}")
    if not r.ok:
        console.print(f"[red]training failed[/]: {r.error}")
        raise typer.Exit(1)


@data_app.command("list")
def data_list(json: bool = typer.Option(False, "--json")) -> None:
    """The datasets a spec string can name: the built-ins and any plugin's (entry points mnas.datasets)."""
    from mnas.data import list_datasets

    items = list_datasets()
    if json:
        print_json(items)
        return
    console.print(table("datasets", ["spec", "available", "description"],
                        [[d["spec"], "yes" if d["available"] else "no", d["description"]] for d in items]))


@data_app.command("show")
def data_show(spec: str = typer.Argument(..., help="a dataset spec, e.g. animal-mnist or npz:PATH"),
              resolution: int = typer.Option(TrainConfig().resolution, "--resolution",
                                             help="default: the default recipe's"),
              holdout: Optional[str] = _holdout_option(),
              seed: int = _option("seed", "--seed"),
              json: bool = typer.Option(False, "--json")) -> None:
    """Load a dataset (index a streamed one) and show its split, classes and channels."""
    from mnas.data import load_dataset

    _show(load_dataset(spec, resolution, _count_or_fraction(holdout), seed).describe(), json)


@data_app.command("cache")
def data_cache(spec: str = typer.Argument(..., help="a streamed dataset: imagefolder:PATH"),
               resolution: int = typer.Option(..., "--resolution", help="the proxy resolution to store"),
               into: Optional[str] = typer.Option(None, "--dir", help="the cache folder to create (proxy.cache / "
                                                  "--cache)"),
               out: Optional[str] = typer.Option(None, "--out", hidden=True, help="deprecated: --dir"),
               holdout: Optional[str] = _holdout_option(),
               seed: int = _option("seed", "--seed"),
               workers: int = _option("workers", "--workers"),
               max_bad_fraction: float = _option("max_bad_fraction", "--max-bad-fraction"),
               rebuild: bool = typer.Option(False, "--rebuild", help="replace the cache already in --dir (its "
                                            "source changed, or it is damaged)"),
               json: bool = typer.Option(False, "--json")) -> None:
    """Decode a streamed dataset once into a memory-mapped uint8 cache at one resolution and split."""
    from mnas.data import Stream, build_cache, load_dataset
    from mnas.data.cache import is_cache

    out = deprecated_option("--out", out, "--dir", into)
    if out is None:
        raise MnasError("give the cache folder to create: --dir DIR")
    if is_cache(out) and not rebuild:
        raise MnasError(f"{out} is a cache already: add --rebuild to replace it")
    data = load_dataset(spec, resolution, _count_or_fraction(holdout), seed)
    if not isinstance(data, Stream):
        raise MnasError(f"a cache is for streamed datasets (imagefolder:PATH); {spec} is held in memory already")
    build_cache(data, out, workers, max_bad_fraction, rebuild)
    _show(load_dataset(spec, resolution, _count_or_fraction(holdout), seed, cache=out).describe(), json)


def _show(info: dict, json: bool) -> None:
    if json:
        print_json(info)
        return
    console.print(table(info["name"], ["field", "value"],
                        [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in info.items()]))
