"""What the device agent and its client (the ``remote`` backend) agree on: the bearer token, how settings
travel in the query string, the default port. Both sides import this module; neither imports the other."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlencode

from mnas import MnasError
from mnas.latency.settings import LatencySettings
from mnas.schema import validate

DEFAULT_PORT = 8765
TOKEN_ENV = "MNAS_DEVICE_TOKEN"
TOKEN_FILE_ENV = "MNAS_DEVICE_TOKEN_FILE"
# resolution, batch and channels are not sent: the agent reads them from the model file itself
QUERY_SETTINGS = ("runs", "warmup", "rounds", "threads", "cv_threshold", "max_remeasures", "pin_core", "clock")
# one request must not hold the agent's single measuring slot for hours
LIMITS = {"runs": 10_000, "warmup": 10_000, "rounds": 100}


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        raise MnasError(f"token file {path} not found (create one: python -c \"import secrets; "
                        f"print(secrets.token_urlsafe(32))\" > {path})") from None
    if not token:
        raise MnasError(f"token file {path} is empty")
    return token


def resolve_token(token: str | None = None, token_file: str | None = None) -> str:
    """The token given, else read from ``token_file``, else from $MNAS_DEVICE_TOKEN_FILE or $MNAS_DEVICE_TOKEN
    (how a config-driven search, which names only a backend spec, passes it)."""
    if token:
        return token
    path = token_file or os.environ.get(TOKEN_FILE_ENV)
    if path:
        return read_token(path)
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    raise MnasError(f"the remote backend needs the agents' token: --token-file F, ${TOKEN_FILE_ENV} or ${TOKEN_ENV}")


def settings_to_query(settings: LatencySettings) -> str:
    values = settings.model_dump(include=set(QUERY_SETTINGS), exclude_none=True)
    return urlencode({k: values[k] for k in QUERY_SETTINGS if k in values})


def settings_from_query(query: str) -> LatencySettings:
    """A request's query string -> settings; anything wrong is one MnasError line (the agent answers 400)."""
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
    unknown = params.keys() - set(QUERY_SETTINGS)
    if unknown:
        raise MnasError(f"unknown setting {sorted(unknown)[0]!r}: expected some of {', '.join(QUERY_SETTINGS)}")
    settings = validate(LatencySettings, params, "query")
    for name, limit in LIMITS.items():
        if getattr(settings, name) > limit:
            raise MnasError(f"{name} is limited to {limit}, got {getattr(settings, name)}")
    return settings
