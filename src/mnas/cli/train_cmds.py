"""``mnas train NAME|STRING --dataset D``, ``mnas data list``, ``mnas data show``."""

from __future__ import annotations

from typing import Optional

import typer

from mnas.cli.app import app
from mnas.cli.output import console, print_json, table

data_app = typer.Typer(no_args_is_help=True, help="Proxy-task datasets.")
app.add_typer(data_app, name="data")


@app.command("train")
def train(name: str = typer.Argument(..., help="zoo name, canonical string, or TPU/timm block strings"),
          dataset: str = typer.Option("animal-mnist", "--dataset", "-d", help="see 'mnas data list'"),
          preset: str = typer.Option("fast", "--preset", help="fast | mnasnet-imagenet"),
          epochs: Optional[float] = typer.Option(None, "--epochs", help="default: the preset's (fast: 3)"),
          resolution: Optional[int] = typer.Option(None, "--resolution", help="fast: 28"),
          width_multiplier: Optional[float] = typer.Option(None, "--width-multiplier", "-w", help="fast: 0.5"),
          batch_size: Optional[int] = typer.Option(None, "--batch-size", help="fast: 64"),
          optimizer: Optional[str] = typer.Option(None, "--optimizer", help="sgd | adam | adamw | rmsprop"),
          lr: Optional[float] = typer.Option(None, "--lr"),
          seed: int = typer.Option(0, "--seed"),
          val_fraction: float = typer.Option(0.2, "--val-fraction"),
          threads: int = typer.Option(0, "--threads", help="0: auto (1 when the CPU is busy)"),
          device: str = typer.Option("auto", "--device"),
          json: bool = typer.Option(False, "--json")) -> None:
    """Train an architecture on the proxy task and report held-out top-1."""
    from mnas.space import resolve_arch
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from mnas.train import TrainConfig, load_dataset, train_proxy

    label, arch = resolve_arch(name, 1.0)  # the config applies the width multiplier
    cfg = TrainConfig(preset=preset, epochs=epochs, resolution=resolution, width_multiplier=width_multiplier,
                      batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed, val_fraction=val_fraction,
                      threads=threads, device=device)
    data = load_dataset(dataset, cfg.resolution, cfg.val_fraction, cfg.seed)
    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("train", total=None, loss="-")
        r = train_proxy(arch, data, cfg, progress=lambda step, total, loss: bar.update(
            task, completed=step, total=total, loss=f"{loss:.3f}"))
    info = {"name": label, **r.to_dict(), "train": data.n_train, "val": data.n_val,
            "resolution": cfg.resolution, "width_multiplier": cfg.width_multiplier,
            "batch_size": cfg.batch_size, "preset": cfg.preset}
    if json:
        print_json(info)
    else:
        rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in info.items()
                if k not in ("config", "loss_curve", "arch")]
        rows.append(["loss_curve", " ".join(f"{v:.3f}" for v in r.loss_curve)])
        console.print(table(f"train {label} on {data.name}", ["field", "value"], rows))
    if not r.ok:
        raise typer.Exit(1)


@data_app.command("list")
def data_list(json: bool = typer.Option(False, "--json")) -> None:
    """The dataset kinds a spec string can name."""
    from mnas.train import list_datasets

    items = list_datasets()
    if json:
        print_json(items)
        return
    console.print(table("datasets", ["spec", "available", "description"],
                        [[d["spec"], "yes" if d["available"] else "no", d["description"]] for d in items]))


@data_app.command("show")
def data_show(spec: str = typer.Argument(..., help="a dataset spec, e.g. animal-mnist or npz:PATH"),
              resolution: int = typer.Option(28, "--resolution"),
              val_fraction: float = typer.Option(0.2, "--val-fraction"),
              seed: int = typer.Option(0, "--seed"),
              json: bool = typer.Option(False, "--json")) -> None:
    """Load a dataset and show its split, classes and channels."""
    from mnas.train import load_dataset

    info = load_dataset(spec, resolution, val_fraction, seed).describe()
    if json:
        print_json(info)
        return
    console.print(table(info["name"], ["field", "value"],
                        [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in info.items()]))
