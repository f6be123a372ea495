"""A store of made-up trials over real architectures: for the report benchmark and tests, and for trying
``mnas report`` without running a search. Accuracy and latency are invented (a log-linear trade-off plus
noise); the architectures, tokens and reward formula are the real ones."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from mnas.search.reward import RewardConfig, reward
from mnas.space import MnasNetSpace
from mnas.store import Store, Trial, TrialStatus


def fill_synthetic(directory: str | Path, n: int = 100, seed: int = 0, target_ms: float = 20.0,
                   alpha: float = -0.07, beta: float = -0.07, fail_every: int = 25,
                   backend: str = "onnxruntime", resolution: int = 224, num_classes: int = 1000,
                   runs: int = 30, entropy_every: int = 0) -> Path:
    space = MnasNetSpace.load()
    cfg = RewardConfig(preset=None, alpha=alpha, beta=beta, target_ms=target_ms)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    settings = {"resolution": resolution, "batch": 1, "threads": 1, "runs": runs, "warmup": max(1, runs // 6),
                "rounds": min(5, runs), "num_classes": num_classes, "in_chans": 3}
    store = Store(directory, create=True)
    entropy_every = entropy_every or max(1, n // 50)
    with store.transaction() as conn:
        store.set_meta("config", {"strategy": {"name": "synthetic"}, "reward": {"alpha": alpha, "beta": beta,
                                                                               "target_ms": target_ms},
                                  "latency": {"backend": backend, "settings": settings}}, conn=conn)
        store.set_meta("target_ms", target_ms, conn=conn)
        store.set_meta("reward", {"alpha": alpha, "beta": beta, "target_ms": target_ms}, conn=conn)
        store.set_meta("latency", {"backend": backend, "settings": settings}, conn=conn)
        store.set_meta("space", space.describe(), conn=conn)
        for i in range(n):
            arch = space.sample(rng)
            tid = store.add_trial(arch.canonical, space.encode(arch), conn=conn)
            if (i + 1) % entropy_every == 0:
                store.add_diagnostics({"entropy": float(40 * math.exp(-2.0 * i / max(1, n)))}, i + 1, conn=conn)
            if fail_every and i % fail_every == fail_every - 1:
                store.finish_trial(Trial(tid, arch.canonical, TrialStatus.FAILED,
                                         error="RuntimeError: synthetic failure (out of memory)"), conn)
                continue
            # the sampler drifts toward T as the "search" goes on
            spread = 0.8 * (1 - 0.6 * i / max(1, n))
            lat = float(target_ms * math.exp(nrng.normal(0.1 * (1 - i / max(1, n)), spread)))
            acc = float(np.clip(0.70 + 0.035 * math.log2(lat / target_ms) + nrng.normal(0, 0.01), 0.01, 0.99))
            params = int(3.9e6 * (lat / target_ms) ** 0.7 * nrng.uniform(0.8, 1.2))
            macs = int(3.1e8 * (lat / target_ms) * nrng.uniform(0.85, 1.15))
            store.finish_trial(Trial(tid, arch.canonical, TrialStatus.COMPLETED, accuracy=acc, latency_ms=lat,
                                     reward=reward(acc, lat, cfg), params=params, macs=macs,
                                     latency={"median_ms": lat, "backend": backend},
                                     train={"accuracy": acc, "synthetic": True}, started=i - 1.0,
                                     finished=float(i)), conn)  # one second each
    store.close()
    return Path(directory)
