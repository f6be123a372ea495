"""Shared by the search tests: a tiny real search (digits proxy at 16 px, real onnxruntime timings at 32 px),
config editing by dotted keys, and the CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

TINY = {
    "name": "tiny", "seed": 0, "trials": 6,
    "strategy": {"name": "random"},
    "reward": {"preset": "soft", "target_ms": 1.0},
    "latency": {"backend": "onnxruntime", "resolution": 32, "runs": 5, "warmup": 1, "cv_threshold": 0.5},
    "proxy": {"dataset": "digits", "resolution": 16, "width_multiplier": 0.25, "epochs": 1,
              "batch_size": 64, "train_limit": 128},
    "references": False,  # the report tests cover them; here they would only cost time
}


def tiny(**changes):
    """TINY with ``changes`` applied: dotted keys (``proxy.epochs``) set nested values."""
    cfg = json.loads(json.dumps(TINY))
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def write_config(tmp_path, cfg, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def mnas(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mnas", *map(str, args)], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)
