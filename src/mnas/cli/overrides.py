"""``--set KEY=VALUE`` options, shared by the commands that take config overrides."""

from __future__ import annotations

from typing import Any

from mnas import MnasError
from mnas.schema import YamlSyntaxError, load_yaml


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items -> {dotted key: value}; values are read as YAML (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MnasError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. proxy.epochs=2")
        try:  # bounded as a config file is: no alias bombs, no deep nesting
            out[key.strip()] = load_yaml(value, f"--set {key.strip()}") if value.strip() else None
        except YamlSyntaxError:
            out[key.strip()] = value
    return out
