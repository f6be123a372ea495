"""The control of the CIFAR-10 protocol (docs/results/cifar10.md, "The models retrained", item 4).

Random architectures of ``mnasnet-cifar`` are drawn exactly as ``mnas arch sample --space mnasnet-cifar --seed
2028 -n 400`` draws them and kept in draw order when their latency over T's (MobileNetV2-CIFAR x1.0), timed
in the same interleaved rounds as T with ``configs/cifar10.yaml``'s latency settings, lies in [0.9, 1.1]. The
first ``--keep`` kept are the control.

Each chunk of candidates is timed together with T, so a machine that slows down moves both. Every ratio is
written to ``--out`` (JSON, atomically) as soon as its chunk is timed; a killed run resumes from it.

    python benchmarks/cifar10_control.py --out runs/cifar10-control.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from mnas.fileio import atomic_write
from mnas.latency import get_backend
from mnas.latency.lut.build import time_models
from mnas.search.config import load_config
from mnas.space import load_space, zoo

SEED = 2028  # fixed by the protocol; used for nothing else
DRAWN = 400
BAND = (0.9, 1.1)
CHUNK = 8  # candidates timed together with T in one set of interleaved rounds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--config", default="configs/cifar10.yaml")
    p.add_argument("--keep", type=int, default=5)
    p.add_argument("--drawn", type=int, default=DRAWN)
    a = p.parse_args(argv)

    cfg = load_config(a.config)
    settings = cfg.latency.settings()
    backend = get_backend(cfg.latency.backend)
    space = load_space("mnasnet-cifar")
    rng = random.Random(SEED)
    archs = [space.sample(rng) for _ in range(a.drawn)]
    target = zoo.get("mobilenet-v2-cifar")

    state = json.loads(a.out.read_text()) if a.out.exists() else {"seed": SEED, "band": BAND, "timed": []}
    done = {r["index"]: r for r in state["timed"]}
    shape = settings.input_shape()
    i = len(done)
    while i < len(archs) and sum(BAND[0] <= r["ratio"] <= BAND[1] for r in state["timed"]) < a.keep:
        chunk = list(range(i, min(i + CHUNK, len(archs))))
        timed = time_models(backend, [(target, shape)] + [(archs[j], shape) for j in chunk], settings)
        t_ms = timed[0].ms
        load = os.getloadavg()[0]
        for j, t in zip(chunk, timed[1:]):
            state["timed"].append({"index": j, "arch": archs[j].canonical, "ms": t.ms, "t_ms": t_ms, "noisy": t.noisy,
                                   "ratio": t.ms / t_ms, "load1": load,
                                   "when": time.strftime("%Y-%m-%dT%H:%M:%S")})
        atomic_write(a.out, json.dumps(state, indent=1).encode())
        i = chunk[-1] + 1
        kept = [r for r in state["timed"] if BAND[0] <= r["ratio"] <= BAND[1]]
        print(f"{i}/{len(archs)} timed, {len(kept)} within {BAND} of T ({t_ms:.3f} ms, load {load:.1f})",
              flush=True)
    kept = [r for r in sorted(state["timed"], key=lambda r: r["index"]) if BAND[0] <= r["ratio"] <= BAND[1]]
    control = kept[:a.keep]
    state["control"] = [r["arch"] for r in control]
    atomic_write(a.out, json.dumps(state, indent=1).encode())
    for r in control:
        print(f"#{r['index']:3d}  {r['ratio']:.3f} x T  {r['arch']}")
    if len(control) < a.keep:
        print(f"only {len(control)} of {a.keep} found among {len(archs)} drawn", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
