"""Does the streaming loader keep up with the trainer? Images/s the DataLoader workers deliver to the
training loop (decode, crop, uint8 batch, normalised on the device: no model), against images/s the
trainer consumes on the same architecture, resolution and batch size from an in-memory tensor.

    python benchmarks/loader_throughput.py imagefolder:PATH --resolution 224 [--workers 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from mnas.space import zoo
from mnas.data import load_dataset
from mnas.train import TrainConfig, train_proxy
from mnas.data.datasets import Dataset
from mnas.data.feeds import StreamFeed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--arch", default="mnasnet-a1")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--recipe", default="fast")
    a = ap.parse_args()
    cfg = TrainConfig(recipe=a.recipe, resolution=a.resolution, batch_size=a.batch_size, workers=a.workers,
                      width_multiplier=a.width, device="cpu", epochs=1)
    data = load_dataset(a.spec, a.resolution)
    feed = StreamFeed(data, cfg, torch.device("cpu"), torch.channels_last, torch.Generator().manual_seed(0))
    t = time.perf_counter()
    seen = sum(len(y) for _, y in feed.epoch(a.batch_size, a.steps))
    loader = seen / (time.perf_counter() - t)  # worker start-up included, as a trial pays it
    feed.close()

    n = a.batch_size * a.steps
    x = torch.randint(0, 256, (n + 2, 3, a.resolution, a.resolution), dtype=torch.uint8)
    y = torch.arange(n + 2) % data.num_classes
    synthetic = Dataset("synthetic", x[:n], y[:n], x[n:], y[n:], data.num_classes, 3, a.resolution, data.mean,
                        data.std, data.classes)
    r = train_proxy(zoo.get(a.arch), synthetic, cfg.model_copy(update={"epochs": 1.0}))
    print(json.dumps({"spec": a.spec, "resolution": a.resolution, "batch_size": a.batch_size, "workers": a.workers,
                      "steps": a.steps, "loader_images_per_s": round(loader, 1),
                      "trainer_images_per_s": round(r.train_images_per_s, 1),
                      "loader_over_trainer": round(loader / r.train_images_per_s, 2),
                      "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
