"""One registry pattern for every extension point (latency backends, strategies, datasets, executors,
search spaces): a name maps to a ``"module:attr"`` string that is imported only when the entry is first
used, so a registry never imports its entries and an entry may import anything below it.

Entries come from three places, in this order of precedence:

1. the built-in table a package passes when it creates its registry (one line per built-in entry);
2. ``registry.register(name, target)`` calls, e.g. from a plugin module or a test;
3. the ``importlib.metadata`` entry-point group named by the registry (``mnas.backends``,
   ``mnas.strategies``, ``mnas.datasets``, ``mnas.executors``, ``mnas.spaces``), read on the first lookup
   of a name that is not known yet: a pip-installed plugin needs no line in mnas at all.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

from mnas import MnasError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the choice closest to a mistyped ``name``, or "" when none is close: the
    one suggestion every unknown-name error gives (registries, the zoo, training recipes)."""
    text = str(name).strip().lower()
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(text, list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, builtins: dict[str, str] | None = None,
                 hint: str = "") -> None:
        self.kind = kind  # "latency backend", "strategy", ...: used in error messages
        self.group = group
        self.hint = hint  # appended to the unknown-name error, e.g. how to write a remote spec
        self._targets: dict[str, Any] = dict(builtins or {})
        self._loaded: dict[str, T] = {}
        self._entry_points_read = False

    def register(self, name: str, target: str | T) -> None:
        """``target``: ``"module:attr"`` (imported on first use) or the object itself."""
        self._targets[name] = target
        self._loaded.pop(name, None)

    def names(self) -> list[str]:
        self._read_entry_points()
        return list(self._targets)

    def __contains__(self, name: object) -> bool:
        if name not in self._targets:
            self._read_entry_points()
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        if name in self._loaded:
            return self._loaded[name]
        if name not in self:
            hint = f" {self.hint}" if self.hint else ""
            raise MnasError(f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}: expected one of "
                            f"{', '.join(self.names())}.{hint}")
        target = self._targets[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            try:
                obj = importlib.import_module(module)
                for part in attr.split(".") if attr else []:
                    obj = getattr(obj, part)
            except ImportError as e:
                raise MnasError(f"{self.kind} {name!r} needs a package that is not installed ({e})") from None
            target = obj
        self._loaded[name] = target
        return target

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            self._targets.setdefault(ep.name, ep.value)
