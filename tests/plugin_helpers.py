"""Install a plugin the way pip would, without pip: a module plus a ``*.dist-info`` with entry points, in a
folder that the subprocess gets on PYTHONPATH. No mnas file is edited to register it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def install_plugin(root: Path, name: str, module_source: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """``entry_points``: group -> {entry name: "module:attr"}; returns ``root`` (put it on PYTHONPATH)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def mnas_with(plugin_root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_root), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "mnas", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)
