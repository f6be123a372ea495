"""``mnas train NAME|STRING --dataset D``, ``mnas data list``, ``mnas data show``."""

from __future__ import annotations

from typing import Any, Optional

import typer

from mnas.cli.app import app
from mnas.cli.output import console, print_json, table
from mnas.cli.progress import progress_bar
from mnas.train import ProxyConfig, TrainConfig
from mnas.train.recipes import BASE

data_app = typer.Typer(no_args_is_help=True, help="Proxy-task datasets.")
app.add_typer(data_app, name="data")


def _option(field: str, *names: str) -> Any:
    """A typer option whose default and help come from the schema's field."""
    help_text = ProxyConfig.model_fields[field].description or ""
    if field in BASE:
        help_text = f"{help_text}; default: the preset's" if help_text else "default: the preset's"
    return typer.Option(ProxyConfig.default(field), *names, help=help_text)


@app.command("train")
def train(name: str = typer.Argument(..., help="zoo name, canonical string, or TPU/timm block strings"),
          dataset: str = _option("dataset", "--dataset", "-d"),
          preset: str = _option("preset", "--preset"),
          epochs: Optional[float] = _option("epochs", "--epochs"),
          resolution: Optional[int] = _option("resolution", "--resolution"),
          width_multiplier: Optional[float] = _option("width_multiplier", "--width-multiplier", "-w"),
          batch_size: Optional[int] = _option("batch_size", "--batch-size"),
          optimizer: Optional[str] = _option("optimizer", "--optimizer"),
          lr: Optional[float] = _option("lr", "--lr"),
          seed: int = _option("seed", "--seed"),
          val_fraction: float = _option("val_fraction", "--val-fraction"),
          threads: int = _option("threads", "--threads"),
          device: str = _option("device", "--device"),
          json: bool = typer.Option(False, "--json")) -> None:
    """Train an architecture on the proxy task and report held-out top-1."""
    from mnas.space import resolve_arch
    from mnas.train import load_dataset, train_proxy

    label, arch = resolve_arch(name, 1.0)  # the config applies the width multiplier
    cfg = ProxyConfig(dataset=dataset, preset=preset, epochs=epochs, resolution=resolution,
                      width_multiplier=width_multiplier, batch_size=batch_size, optimizer=optimizer, lr=lr,
                      seed=seed, val_fraction=val_fraction, threads=threads, device=device)
    data = load_dataset(cfg.dataset, cfg.resolution, cfg.val_fraction, cfg.seed)
    with progress_bar("training", detail="loss {task.fields[loss]}") as update:
        r = train_proxy(arch, data, cfg, progress=lambda step, total, loss: update(step, total, loss=f"{loss:.3f}"))
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
    """The datasets a spec string can name: the built-ins and any plugin's (entry points mnas.datasets)."""
    from mnas.train import list_datasets

    items = list_datasets()
    if json:
        print_json(items)
        return
    console.print(table("datasets", ["spec", "available", "description"],
                        [[d["spec"], "yes" if d["available"] else "no", d["description"]] for d in items]))


@data_app.command("show")
def data_show(spec: str = typer.Argument(..., help="a dataset spec, e.g. animal-mnist or npz:PATH"),
              resolution: int = typer.Option(TrainConfig().resolution, "--resolution",
                                             help="default: the default preset's"),
              val_fraction: float = _option("val_fraction", "--val-fraction"),
              seed: int = _option("seed", "--seed"),
              json: bool = typer.Option(False, "--json")) -> None:
    """Load a dataset and show its split, classes and channels."""
    from mnas.train import load_dataset

    info = load_dataset(spec, resolution, val_fraction, seed).describe()
    if json:
        print_json(info)
        return
    console.print(table(info["name"], ["field", "value"],
                        [[k, ", ".join(v) if isinstance(v, list) else v] for k, v in info.items()]))
