"""The ``mnas`` command line. Subcommand groups live in one module each and register in ``app``."""

from __future__ import annotations

import os
import sys

import typer
from pydantic import ValidationError
from typer.exceptions import TyperException

from mnas import MnasError
from mnas.schema import validation_message

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
    from mnas.cli.app import app

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
