"""What the device agent and its client (the ``remote`` backend) agree on: the bearer token, how settings
travel in the query string, the default port. Both sides import this module; neither imports the other."""

from __future__ import annotations

import logging
import os
import stat
from urllib.parse import parse_qs, urlencode

from mnas import MnasError
from mnas.latency.settings import LatencySettings
from mnas.schema import validate

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
TOKEN_ENV = "MNAS_DEVICE_TOKEN"
TOKEN_FILE_ENV = "MNAS_DEVICE_TOKEN_FILE"
MIN_TOKEN_BYTES = 16
MAKE_TOKEN = "python -c \"import secrets; print(secrets.token_urlsafe(32))\""
# resolution, batch and channels are not sent: the agent reads them from the model file itself
QUERY_SETTINGS = ("runs", "warmup", "rounds", "threads", "cv_threshold", "max_remeasures", "pin_core", "clock")
# one request must not hold the agent's single measuring slot for hours (the agent's wall-clock limit
# bounds the rest); checked before the schema, so "1e9" is refused by its cap rather than by its spelling
LIMITS = {"runs": 10_000, "warmup": 10_000, "rounds": 100, "max_remeasures": 10}


def read_token(path: str) -> str:
    """The token in ``path``; warns when other users may read the file (Unix)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MnasError(f"token file {path} not found (create one: {MAKE_TOKEN} > {path})") from None
    except UnicodeDecodeError:
        raise MnasError(f"token file {path} is not UTF-8 text (create one: {MAKE_TOKEN} > {path})") from None
    except OSError as e:
        raise MnasError(f"cannot read token file {path}: {e.strerror or e}") from None
    if not token:
        raise MnasError(f"token file {path} is empty")
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("token file %s is readable by group or others: chmod 600 %s", path, path)
    return token


def warn_if_weak(token: str) -> None:
    if len(token.encode()) < MIN_TOKEN_BYTES:
        log.warning("the token is shorter than %d bytes and can be guessed; make one with %s", MIN_TOKEN_BYTES,
                    MAKE_TOKEN)


def resolve_token(token: str | None = None, token_file: str | None = None) -> str:
    """The token given, else read from ``token_file``, else from $MNAS_DEVICE_TOKEN_FILE or $MNAS_DEVICE_TOKEN
    (how a config-driven search, which names only a backend spec, passes it). Warns when it is short."""
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if not token and path:
        token = read_token(path)
    token = token or os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise MnasError(f"the remote backend needs the agents' token: --token-file F, ${TOKEN_FILE_ENV} or "
                        f"${TOKEN_ENV}")
    warn_if_weak(token)
    return token


def settings_to_query(settings: LatencySettings) -> str:
    values = settings.model_dump(include=set(QUERY_SETTINGS), exclude_none=True)
    return urlencode({k: values[k] for k in QUERY_SETTINGS if k in values})


def settings_from_query(query: str) -> LatencySettings:
    """A request's query string -> settings; anything wrong is one MnasError line (the agent answers 400)."""
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
    unknown = params.keys() - set(QUERY_SETTINGS)
    if unknown:
        raise MnasError(f"unknown setting {sorted(unknown)[0]!r}: expected some of {', '.join(QUERY_SETTINGS)}")
    for name, limit in LIMITS.items():
        try:
            value = float(params.get(name, "0"))
        except ValueError:
            continue  # not a number: the schema says so below
        if value > limit:
            raise MnasError(f"{name} is limited to {limit} per request, got {params[name]}")
    return validate(LatencySettings, params, "query")
