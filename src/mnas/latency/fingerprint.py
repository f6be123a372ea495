"""Which machine a number came from: CPU model, cores, OS. Works on Linux (x86, Raspberry Pi, Jetson),
Android under Termux, macOS and Windows, using only the standard library."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cmd(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    info = _read("/proc/cpuinfo")
    for key in ("model name", "Hardware", "cpu model", "Processor"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return " ".join(line.split(":", 1)[1].split())
    # ARM boards list no model name: the board's own name is the best label we have
    board = _read("/proc/device-tree/model").strip("\x00\n ")
    if board:
        return board
    if platform.system() == "Darwin":
        return _cmd("sysctl", "-n", "machdep.cpu.brand_string") or platform.machine()
    if os.environ.get("TERMUX_VERSION") or Path("/system/build.prop").exists():
        soc = _cmd("getprop", "ro.soc.model") or _cmd("getprop", "ro.board.platform")
        if soc:
            return f"{_cmd('getprop', 'ro.product.model')} {soc}".strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def fingerprint() -> dict[str, Any]:
    """The device's identity; ``id`` hashes what changes timings (CPU, core count, OS kind, ISA)."""
    fp = {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "usable_cores": usable_cores(),
          "machine": platform.machine(), "os": platform.system(), "os_release": platform.release(),
          "python": platform.python_version(), "hostname": platform.node()}
    stable = f"{fp['cpu']}|{fp['cores']}|{fp['machine']}|{fp['os']}"
    fp["id"] = hashlib.sha256(stable.encode()).hexdigest()[:12]
    return fp
