"""A proxy trial on the memory-mapped cache against the same images copied into process memory: the
same trainer, model, seed and steps; legs alternate and repeat so load from other work hurts neither
side more. Reports each repeat's training images/s.

    python benchmarks/cache_vs_memory.py CACHE_FOLDER imagefolder:PATH --resolution 32 [--steps 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from mnas.space import zoo
from mnas.data import load_dataset
from mnas.train import TrainConfig, train_proxy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache")
    ap.add_argument("spec")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--holdout", type=int, default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--arch", default="mnasnet-a1")
    a = ap.parse_args()
    mapped = load_dataset(a.spec, a.resolution, a.holdout, cache=a.cache)
    in_memory = dataclasses.replace(mapped, x_train=mapped.x_train.clone(), x_val=mapped.x_val.clone())
    cfg = TrainConfig(resolution=a.resolution, device="cpu", epochs=1, train_limit=a.steps * 64, batch_size=64)
    rows = {"cache": [], "memory": []}
    for _ in range(a.repeats):
        for name, data in (("cache", mapped), ("memory", in_memory)):
            r = train_proxy(zoo.get(a.arch), data, cfg)
            rows[name].append(round(r.train_images_per_s, 1))
    print(json.dumps({"images_per_s": rows, "best_ratio_cache_over_memory":
                      round(max(rows["cache"]) / max(rows["memory"]), 3), "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
