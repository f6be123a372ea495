"""Shared by the report and export tests: one tiny real search per test session (it costs a minute)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

TINY_SEARCH = {
    "name": "tiny-report", "seed": 0, "trials": 3,
    "strategy": {"name": "ppo", "settings": {"batch_size": 2}},
    "reward": {"preset": "soft", "target_ms": 1.0},
    "latency": {"backend": "onnxruntime", "resolution": 32, "runs": 3, "warmup": 1, "num_classes": 10},
    "proxy": {"dataset": "digits", "resolution": 16, "width_multiplier": 0.25, "epochs": 1,
              "batch_size": 64, "train_limit": 64},
}

_cache: dict[str, Path] = {}


def mnas(*args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "mnas", *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"mnas {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def tiny_search(base: Path) -> Path:
    """DIR of a finished 3-trial search (real training on digits, real onnxruntime timings), made once."""
    if "dir" not in _cache:
        cfg = base / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(TINY_SEARCH))
        out = base / "search"
        mnas("search", out, "--config", cfg)
        _cache["dir"] = out
    return _cache["dir"]


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
