"""Training throughput: mnas's proxy trainer against a plain PyTorch loop, same model, same data.

The plain loop is what one writes by default: NCHW tensors, a DataLoader over a float TensorDataset,
zero_grad(), SGD with momentum, torch's default thread count. The trainer runs the same model (MnasNet-A1
at the proxy width) on the same images at the same batch size and thread count. Legs alternate and
repeat; the best of the repeats is reported for each, so a burst of load from other work on the machine
hurts neither side more than the other.

    python benchmarks/train_throughput.py [--steps 60] [--repeats 2] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mnas.model import build
from mnas.space import zoo
from mnas.data import load_dataset
from mnas.train import TrainConfig, train_proxy
from mnas.data.feeds import batch_preparer


def plain_loop(arch, data, steps: int, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = build(arch, data.num_classes, data.in_chans, 0.2)
    x = batch_preparer(data, torch.device("cpu"), torch.contiguous_format)(data.x_train[: steps * batch_size])
    loader = DataLoader(TensorDataset(x, data.y_train[: steps * batch_size]), batch_size=batch_size,
                        shuffle=True, drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    t = time.perf_counter()
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        seen += len(xb)
    return seen / (time.perf_counter() - t)


def trainer(arch, data, steps: int, batch_size: int, seed: int, threads: int) -> float:
    cfg = TrainConfig(epochs=1, batch_size=batch_size, resolution=data.resolution, width_multiplier=1.0,
                      train_limit=steps * batch_size, threads=threads, seed=seed, device="cpu")
    r = train_proxy(arch, data, cfg)
    return r.train_images_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="animal-mnist")
    ap.add_argument("--arch", default="mnasnet-a1")
    ap.add_argument("--width-multiplier", type=float, default=0.5)
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default for both legs")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    arch = zoo.get(a.arch, a.width_multiplier)
    data = load_dataset(a.dataset, a.resolution)
    # warm-up: oneDNN builds its kernels on first use, for either memory format
    plain_loop(arch, data, 3, a.batch_size, 0)
    trainer(arch, data, 3, a.batch_size, 0, threads)
    plain, fast = [], []
    for r in range(a.repeats):
        plain.append(plain_loop(arch, data, a.steps, a.batch_size, r))
        fast.append(trainer(arch, data, a.steps, a.batch_size, r, threads))
    out = {"arch": a.arch, "width_multiplier": a.width_multiplier, "dataset": a.dataset,
           "resolution": a.resolution, "batch_size": a.batch_size, "steps": a.steps, "threads": threads,
           "plain_images_per_s": round(max(plain), 1), "trainer_images_per_s": round(max(fast), 1),
           "ratio": round(max(fast) / max(plain), 2), "plain_all": [round(v, 1) for v in plain],
           "trainer_all": [round(v, 1) for v in fast], "load_average": os.getloadavg()}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{a.arch} x{a.width_multiplier} on {a.dataset} {a.resolution}px, batch {a.batch_size}, "
              f"{a.steps} steps, {threads} thread(s), load {out['load_average'][0]:.1f}")
        print(f"  plain PyTorch loop (NCHW) {out['plain_images_per_s']:8.1f} images/s  {out['plain_all']}")
        print(f"  mnas trainer              {out['trainer_images_per_s']:8.1f} images/s  {out['trainer_all']}")
        print(f"  ratio                     {out['ratio']:8.2f}x")


if __name__ == "__main__":
    main()
