"""The root Typer app: global options (version, logging, debug) here; each module below adds its commands."""

from __future__ import annotations

import logging
import os
from typing import Optional

import typer

from mnas import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="mnas: platform-aware neural architecture search (MnasNet).")

LOG_LEVELS = ("debug", "info", "warning", "error")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnas {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="print the version and exit"),
    log_level: str = typer.Option(os.environ.get("MNAS_LOG_LEVEL", "warning"), "--log-level",
                                  help=f"{' | '.join(LOG_LEVELS)} (env MNAS_LOG_LEVEL); logs go to stderr"),
    debug: bool = typer.Option(False, "--debug", help="show the traceback of an error instead of one line "
                               "(also MNAS_DEBUG=1); implies --log-level debug"),
) -> None:
    """mnas: platform-aware neural architecture search (MnasNet)."""
    if debug:
        os.environ["MNAS_DEBUG"] = "1"
    configure_logging("debug" if debug else log_level)


def configure_logging(level: str, stream=None) -> None:
    """mnas's loggers at ``level``, to ``stream`` (default stderr)."""
    from mnas import MnasError

    if level.lower() not in LOG_LEVELS:
        raise MnasError(f"--log-level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S",
                        force=True, stream=stream)
    logging.getLogger("mnas").setLevel(level.upper())


from mnas.cli import space_cmds  # noqa: E402,F401  (registers commands on import)
from mnas.cli import config_cmds  # noqa: E402,F401
from mnas.cli import latency_cmds  # noqa: E402,F401
from mnas.cli import device_cmds  # noqa: E402,F401
from mnas.cli import search_cmds  # noqa: E402,F401
from mnas.cli import report_cmds  # noqa: E402,F401
from mnas.cli import export_cmds  # noqa: E402,F401
from mnas.cli import lut_cmds  # noqa: E402,F401
from mnas.cli import train_cmds  # noqa: E402,F401
from mnas.cli import bench_cmds  # noqa: E402,F401
from mnas.cli import retrain_cmds  # noqa: E402,F401
