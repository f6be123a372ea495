"""The ``mnas`` command line. Each ``<group>_cmds.py`` owns its Typer app; main.py assembles them."""

from mnas.cli.main import debugging, entry, main

__all__ = ["debugging", "entry", "main"]
