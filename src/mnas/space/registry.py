"""Search spaces by name (``--space NAME|FILE``, ``space:`` in configs), like zoo models.

A name is looked up in the registry (built-ins below, ``mnas.spaces`` entry points, ``SPACES.register``);
a path to a YAML file is read as a MnasNet-style space. The registered object is called with no arguments.
"""

from __future__ import annotations

from pathlib import Path

from mnas.registry import Registry
from mnas.space.decisions import SearchSpace

DEFAULT_SPACE_NAME = "mnasnet"

SPACES: Registry = Registry("search space", "mnas.spaces", {
    "mnasnet": "mnas.space.mnasnet:MnasNetSpace.load",
    "mnasnet-paper": "mnas.space.mnasnet:MnasNetSpace.paper",
    "mnasnet-cifar": "mnas.space.mnasnet:MnasNetSpace.cifar",
    "mnasnet-cifar-elastic": "mnas.space.mnasnet:MnasNetSpace.cifar_elastic",
    "nb201": "mnas.space.nb201:Nb201Space",
}, hint="Or give the path of a space YAML file (docs/search-space.md).")


def load_space(spec: str | Path | None = None) -> SearchSpace:
    """None -> the default MnasNet space; a registered name; or a YAML file."""
    text = str(spec) if spec is not None else DEFAULT_SPACE_NAME
    if text not in SPACES and (text.endswith((".yaml", ".yml")) or Path(text).is_file()):
        from mnas.space.mnasnet import MnasNetSpace

        return MnasNetSpace.load(text)
    return SPACES.get(text)()
