"""The ``mnas`` command: the root Typer app with the global options (version, logging, debug), every command
module's own app added to it, and ``main``, which turns a user's error into one line and exit code 2. The
command modules never import this one."""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer
from pydantic import ValidationError
from typer.exceptions import TyperException

from mnas import MnasError, __version__
from mnas.cli import (bench_cmds, config_cmds, device_cmds, export_cmds, latency_cmds, lut_cmds, report_cmds,
                      retrain_cmds, search_cmds, space_cmds, supernet_cmds, train_cmds)
from mnas.cli.output import LOG_LEVELS, configure_logging
from mnas.schema import validation_message

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="mnas: platform-aware neural architecture search (MnasNet).")


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


for _commands in (space_cmds, config_cmds, latency_cmds, device_cmds, search_cmds, report_cmds, export_cmds,
                  lut_cmds, train_cmds, bench_cmds, retrain_cmds, supernet_cmds):
    app.add_typer(_commands.app)  # unnamed: its commands and groups join the root, in this order


try:  # typer before its vendored click raised click's own exceptions
    from click.exceptions import ClickException as _ClickException
    _USAGE_ERRORS: tuple[type[Exception], ...] = (TyperException, _ClickException)
except ImportError:
    _USAGE_ERRORS = (TyperException,)


def debugging() -> bool:
    """--debug or MNAS_DEBUG=1: errors re-raise with their traceback instead of the one-line message."""
    return os.environ.get("MNAS_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        result = app(args=argv, prog_name="mnas", standalone_mode=False)
    except (MnasError, ValidationError) as e:
        if debugging():
            raise
        return _fail(str(e) if isinstance(e, MnasError) else validation_message(e, "input"))
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except _USAGE_ERRORS as e:
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if not message:  # bare group: the help was printed
            return 0
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return _fail(f"{message}{hint}")
    except OSError as e:  # a path or port the user gave: missing, busy, not writable, ...
        if debugging():
            raise
        where = f": {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}{where}")
    return result if isinstance(result, int) else 0


def _fail(message: str) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def entry() -> None:
    sys.exit(main())
