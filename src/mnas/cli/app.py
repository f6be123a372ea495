"""The root Typer app: each module below adds its own commands."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="mnas: platform-aware neural architecture search (MnasNet).")

from mnas.cli import space_cmds  # noqa: E402,F401  (registers commands on import)
from mnas.cli import latency_cmds  # noqa: E402,F401
from mnas.cli import device_cmds  # noqa: E402,F401
from mnas.cli import search_cmds  # noqa: E402,F401
from mnas.cli import report_cmds  # noqa: E402,F401
from mnas.cli import lut_cmds  # noqa: E402,F401
from mnas.cli import train_cmds  # noqa: E402,F401
from mnas.cli import bench_cmds  # noqa: E402,F401
