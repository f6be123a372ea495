"""The base of every config schema (pydantic) and the one way a validation error reaches a user.

Each concept has one schema whose field defaults are the defaults (nothing repeats them): the CLI derives
its options' defaults from the schema, configs are validated by it, and the store records its dump.
"""

from __future__ import annotations

import math
import reprlib
import warnings
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mnas import MnasError

M = TypeVar("M", bound=BaseModel)
_depth: ContextVar[int] = ContextVar("schema_validation_depth", default=0)

# Seeds go to numpy's RandomState (Optuna's samplers) as well as torch and numpy's Generator: 2**32 - 1 is the
# largest all of them take
SEED_MAX = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]

# A config or a space file is a few kilobytes: these bounds are far above any real one and far below what
# hurts (a "billion laughs" file of aliases expands exponentially; deep nesting overflows Python's stack)
MAX_YAML_BYTES = 1 << 20
MAX_VALUES = 10_000  # values in a document once every alias is expanded
MAX_DEPTH = 50  # nested mappings and lists


class Schema(BaseModel):
    """Unknown keys are errors (a misspelt key must never be silently ignored); every number must be finite
    (NaN and infinity are refused wherever a float goes)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

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
    where = ".".join(key_text(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling against configs/demo.yaml or 'mnas config show')"
    given = err.get("input")
    got = f" (got {excerpt(given)})" if "input" in err and not isinstance(given, dict) else ""
    return f"{source}: {where}: {msg}{got}"


_short = reprlib.Repr()
_short.maxlevel, _short.maxlist, _short.maxtuple, _short.maxdict, _short.maxset = 2, 4, 4, 4, 4
_short.maxstring, _short.maxother, _short.maxlong = 60, 60, 40


def excerpt(value: Any, limit: int = 100) -> str:
    """``repr(value)``, bounded: a few items of a collection, the ends of a long string, at most ``limit``
    characters (an error message must never quote a huge or an exponentially aliased input whole)."""
    text = _short.repr(value).replace("\n", " ")
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with nesting refused beyond ``MAX_DEPTH`` (the composer recurses once per level:
    thousands of levels are a RecursionError)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._level = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._level += 1
        try:
            if self._level > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(f"nested more than {MAX_DEPTH} levels deep (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._level -= 1


class _TooDeep(Exception):
    pass


class YamlSyntaxError(MnasError):
    """Text that is not YAML at all (``--set`` then reads it as a plain string)."""


def load_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML (safe tags only) with bounded size, nesting and alias expansion; anything else
    is one ``MnasError`` line naming ``source``."""
    if len(text) > MAX_YAML_BYTES:
        raise MnasError(f"{source} is {len(text)} characters long, over the limit of {MAX_YAML_BYTES}: is it the "
                        "right file?")
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader
    except _TooDeep as e:
        raise MnasError(f"{source} is {e}: flatten it") from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(f"{source} is not valid YAML: {excerpt_line(str(e))}") from None
    except (ValueError, RecursionError) as e:  # e.g. an integer of more digits than Python converts
        raise MnasError(f"{source} holds a value YAML cannot read: {excerpt_line(str(e))}") from None
    check_bounded(data, source)
    return data


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The YAML file at ``path`` (``what`` it is, e.g. "config file"), bounded as ``load_yaml``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise MnasError(f"{what} {path} is {size} bytes, over the limit of {MAX_YAML_BYTES}: is it the right "
                            "file?")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MnasError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise MnasError(f"{what} {path} is a folder, not a file") from None
    except UnicodeDecodeError as e:
        raise MnasError(f"{what} {path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    return load_yaml(text, f"{what} {path}")


def key_text(key: Any) -> str:
    """A key as a config path shows it: as is when printable and short, else quoted and bounded."""
    text = str(key)
    return text if text.isprintable() and len(text) <= 40 else excerpt(text, 40)


def excerpt_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else f"{line[:limit - 3]}..."


def check_bounded(data: Any, source: str, max_values: int = MAX_VALUES, max_depth: int = MAX_DEPTH) -> None:
    """Refuse ``data`` (parsed YAML or JSON, or a dict from Python) whose values, counted with every shared
    reference (a YAML alias) expanded, exceed ``max_values``, that nests deeper than ``max_depth`` or holds
    itself, or that holds a number that is not finite (NaN, infinity: also where a schema takes any value,
    as a strategy's settings). Linear in the distinct containers: nothing is expanded to count it."""
    if not isinstance(data, _CONTAINERS):
        if isinstance(data, float) and not math.isfinite(data):
            raise MnasError(f"{source}: {data!r} is not a number a config can hold: give a finite one")
        return
    done: dict[int, tuple[int, int]] = {}  # id -> (values, depth) of a finished container
    open_: set[int] = set()
    stack: list[tuple[Any, bool, tuple[str, ...]]] = [(data, False, ())]
    while stack:
        obj, finished, path = stack.pop()
        key = id(obj)
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
        if finished:
            values, depth = 1, 1
            for k, c in items:
                for x in ((k, c) if isinstance(obj, dict) else (c,)):
                    v, d = done.get(id(x), (1, 0)) if isinstance(x, _CONTAINERS) else (1, 0)
                    values, depth = values + v, max(depth, d + 1)
            open_.discard(key)
            done[key] = (values, depth)
            if values > max_values:
                raise MnasError(f"{source} expands to more than {max_values} values (aliases included): a "
                                "config is a few hundred; write it out without aliases of aliases")
            if depth > max_depth:
                raise MnasError(f"{source} is nested more than {max_depth} levels deep: flatten it")
            continue
        if key in done:
            continue
        if key in open_:
            raise MnasError(f"{source} holds itself (a recursive alias): write the value out")
        open_.add(key)
        stack.append((obj, True, path))
        for k, c in items:
            where = (*path, key_text(k))
            for x in ((k, c) if isinstance(obj, dict) else (c,)):
                if isinstance(x, float) and not math.isfinite(x):
                    raise MnasError(f"{source}: {'.'.join(where)}: {x!r} is not a number a config can hold: "
                                    "give a finite one")
                if isinstance(x, _CONTAINERS) and id(x) not in done:
                    stack.append((x, False, where))


_CONTAINERS = (dict, list, tuple)


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
