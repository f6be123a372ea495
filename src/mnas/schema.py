"""The base of every config schema (pydantic) and the one way a validation error reaches a user.

Each concept has one schema whose field defaults are the defaults (nothing repeats them): the CLI derives
its options' defaults from the schema, configs are validated by it, and the store records its dump.
"""

from __future__ import annotations

import warnings
from contextvars import ContextVar
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mnas import MnasError

M = TypeVar("M", bound=BaseModel)
_depth: ContextVar[int] = ContextVar("schema_validation_depth", default=0)


class Schema(BaseModel):
    """Unknown keys are errors (a misspelt key must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def __init__(self, **data: Any) -> None:
        # Code that builds a schema from user input (CLI options, query strings) gets one MnasError line.
        # pydantic also calls __init__ for every nested schema while validating: only the outermost call
        # converts, so the error keeps its full location (proxy.lr); configs go through validate().
        outer = _depth.get()
        token = _depth.set(outer + 1)
        try:
            super().__init__(**data)
        except ValidationError as e:
            if outer:
                raise
            raise MnasError(validation_message(e, type(self).__name__)) from None
        finally:
            _depth.reset(token)

    @classmethod
    def default(cls, field: str) -> Any:
        """The field's default: what a CLI option shows and uses when the user gives nothing."""
        info = cls.model_fields[field]
        return info.get_default(call_default_factory=True)


def validation_message(e: ValidationError, source: str = "config") -> str:
    """The first error of ``e`` as one line: where, what was expected, what was given."""
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against configs/demo.yaml or 'mnas config show')"
    given = err.get("input")
    got = f" (got {given!r})" if "input" in err and not isinstance(given, dict) else ""
    return f"{source}: {where}: {msg}{got}"


def validate(model: type[M], data: Any, source: str = "config") -> M:
    """``model.model_validate(data)``, with a failure as one ``MnasError`` line naming ``source``."""
    token = _depth.set(_depth.get() + 1)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise MnasError(validation_message(e, source)) from None
    finally:
        _depth.reset(token)


def renamed(data: Any, renames: dict[str, str], where: str, warn: bool = True) -> Any:
    """``data`` with each deprecated key of ``renames`` (old -> new) moved to its new name, and a
    ``FutureWarning`` (shown to users by default) for each unless ``warn`` is false (what an experiment or a
    checkpoint recorded: the user cannot rewrite it). Old keys are read for one release; where both are
    given, the new one wins."""
    if not isinstance(data, dict) or not renames.keys() & data.keys():
        return data
    data = dict(data)
    for old, new in renames.items():
        if old in data:
            value = data.pop(old)
            if warn:
                warnings.warn(f"{where}: '{old}' is deprecated, write '{new}' (read until the next release)",
                              FutureWarning, stacklevel=2)
            data.setdefault(new, value)
    return data


def old_name(module: str, name: str, renames: dict[str, str], namespace: dict[str, Any]) -> Any:
    """A module's ``__getattr__`` for names renamed (old -> new, in ``namespace``): the new object, with a
    ``FutureWarning``; read until the next release."""
    if name not in renames:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} is deprecated: use {renames[name]}", FutureWarning, stacklevel=3)
    return namespace[renames[name]]
