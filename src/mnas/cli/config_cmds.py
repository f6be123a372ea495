"""``mnas config show FILE``: the fully resolved experiment config (recipes and reward presets applied,
defaults filled)."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from mnas.cli.output import console, print_json

app = typer.Typer()  # this module's commands; cli/main.py adds them to the root app

config_app = typer.Typer(no_args_is_help=True, help="Experiment configs.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(path: Path = typer.Argument(..., help="experiment YAML (see configs/)"),
                json: bool = typer.Option(False, "--json")) -> None:
    """Validate a config and print every setting as the search will use it (and the store records it)."""
    from mnas.search.config import load_config

    resolved = load_config(path).resolved()
    if json:
        print_json(resolved)
    else:
        console.print(yaml.safe_dump(resolved, sort_keys=False), end="", markup=False, highlight=False)
