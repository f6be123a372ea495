"""Which of a supernet's path draws can its shared weights learn? (issue 29, the diagnosis)

Trains an ``mnas.supernet.SuperNet`` (``mnasnet-cifar`` at width 0.25 on scikit-learn's digits, 8x8 grey
upscaled to 16 px, 1,438 training / 359 held-out images) through ONE path per step, cross-entropy to the
labels, no sandwich and no distillation, and reports the training loss by thirds of the run and the
held-out top-1 of a few sub-networks (batch statistics, no recalibration: what the weights alone give).
Each ``--paths`` rule isolates one way of drawing the path:

    fixed            random architecture A every step (the machinery trains one path)
    alternate        A and B in turn
    cycle:N          A, B and N-2 more random architectures in turn
    random           a new uniform draw of the space every step (single-path one-shot training, SPOS)
    vary:DIMS        the largest sub-network with only DIMS drawn each step (comma-separated decision
                     kinds: op, kernel, se, skip, width, layers; ``exp``: the MBConv expansion, 3 or 6)
    elastic          every decision drawn except op (MBConv, expansion 3 or 6) and skip (identity): the
                     nested choices only, as Once-for-All's space

    python benchmarks/supernet_paths.py --paths random --steps 270
    python benchmarks/supernet_paths.py --paths vary:skip --freeze-transforms
    python benchmarks/supernet_paths.py --smoke

One line of JSON per run is appended to ``--out`` (default runs/supernet-paths.jsonl). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mnas.model import build
from mnas.space import load_space
from mnas.supernet import SuperNet

KINDS = ("op", "kernel", "se", "skip", "width", "layers", "exp")


def digits(resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=resolution, mode="bilinear", align_corners=False)
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:1438], perm[1438:]
    return x[tr], y[tr], x[te], y[te]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", default="random", help="fixed | alternate | cycle:N | random | vary:DIMS | elastic")
    ap.add_argument("--steps", type=int, default=270)
    ap.add_argument("--lr", type=float, default=0.05, help="peak lr, SGD + Nesterov 0.9 (the fast recipe's)")
    ap.add_argument("--warmup", type=int, default=11, help="linear warm-up steps, then cosine to 0")
    ap.add_argument("--clip", type=float, default=None, help="clip the gradient's norm to this")
    ap.add_argument("--freeze-transforms", action="store_true",
                    help="keep the kernel transforms at the identity: a small kernel is the big one's centre")
    ap.add_argument("--share-skip", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--space", default="mnasnet-cifar")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--standalone", action="store_true", help="train build(A) alone instead (the reference)")
    ap.add_argument("--out", type=Path, default=Path("runs/supernet-paths.jsonl"))
    ap.add_argument("--smoke", action="store_true", help="a few seconds: 6 steps")
    args = ap.parse_args()
    if args.smoke:
        args.steps = 6
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    xtr, ytr, xte, yte = digits(args.resolution, args.seed)
    space = load_space(args.space)
    # with transforms, as when the paths were measured (--freeze-transforms keeps them at the identity)
    net = SuperNet(space, 10, 1, args.width, 0.0, share_skip=args.share_skip, kernel_transform=True)
    torch.nn.init.zeros_(net.classifier.weight)  # the fast recipe's zero-initialised head
    net.train()
    draws = random.Random(1)
    a, b = [net.sample(draws) for _ in range(8)][5:7]  # two random architectures of the space
    largest = net.pick("largest")
    rule, _, arg = args.paths.partition(":")
    prng = random.Random(args.seed + 3)
    cycle = [a, b] + [net.sample(random.Random(9)) for _ in range(max(0, int(arg or 2) - 2))] \
        if rule == "cycle" else []
    dims = set(arg.split(",")) if rule == "vary" else set()
    if dims - set(KINDS):
        raise SystemExit(f"vary: unknown kind(s) {sorted(dims - set(KINDS))}; choose from {', '.join(KINDS)}")

    def drawn(base_tokens: list[int], kinds: set[str], mb_only: bool) -> object:
        toks, fresh = list(base_tokens), list(space.encode(net.sample(prng)))
        for i, dec in enumerate(space.decisions):
            kind = dec.name.split(".", 1)[1]
            if kind in kinds:
                toks[i] = fresh[i]
            if kind == "op" and (mb_only or "exp" in kinds):
                toks[i] = prng.choice([dec.choices.index("mb3"), dec.choices.index("mb6")])
        return space.decode(toks)

    identity = [dec.choices.index("identity") if dec.name.endswith(".skip") else 0 for dec in space.decisions]

    def path(step: int) -> object:
        if rule == "fixed":
            return a
        if rule == "alternate":
            return (a, b)[step % 2]
        if rule == "cycle":
            return cycle[step % len(cycle)]
        if rule == "random":
            return net.sample(prng)
        if rule == "vary":
            return drawn(list(space.encode(largest)), dims, False)
        if rule == "elastic":
            fresh = list(space.encode(net.sample(prng)))
            base = [identity[i] if d.name.endswith(".skip") else fresh[i] for i, d in enumerate(space.decisions)]
            return drawn(base, set(), True)
        raise SystemExit(f"--paths {args.paths!r}: choose fixed, alternate, cycle:N, random, vary:DIMS or elastic")

    if args.standalone:
        model = build(a.scaled(args.width), 10, 1, 0.0)
        torch.nn.init.zeros_(model.classifier.weight)
        model.train()
        params = list(model.parameters())
        forward = lambda x, step: model(x)  # noqa: E731
    else:
        if args.freeze_transforms:
            for name, p in net.named_parameters():
                if ".transforms." in name:
                    p.requires_grad_(False)
        params = [p for p in net.parameters() if p.requires_grad]
        forward = lambda x, step: net(x, path(step))  # noqa: E731
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-5)
    order = torch.Generator().manual_seed(args.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    step = 0
    while step < args.steps:
        perm = torch.randperm(len(xtr), generator=order)
        for i in range(0, len(perm) - args.batch_size + 1, args.batch_size):
            if step >= args.steps:
                break
            idx = perm[i:i + args.batch_size]
            f = (step + 1) / args.warmup if step < args.warmup else \
                0.5 * (1 + math.cos(math.pi * step / args.steps))
            for g in opt.param_groups:
                g["lr"] = args.lr * f
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(forward(xtr[idx], step), ytr[idx], label_smoothing=0.1)
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
    k = max(1, len(losses) // 3)
    thirds = [round(sum(losses[j * k:(j + 1) * k]) / len(losses[j * k:(j + 1) * k]), 3) for j in range(3)]

    @torch.no_grad()
    def top1(fn: object) -> float:
        return round(float((fn(xte).argmax(1) == yte).float().mean()), 3)  # type: ignore[operator]

    if args.standalone:
        acc = {"A": top1(model)}
    else:
        acc = {name: top1(lambda x, s=arch: net(x, s)) for name, arch in (("A", a), ("B", b), ("largest", largest))}
        probe = random.Random(77)
        acc["random (median of 5)"] = sorted(top1(lambda x, s=net.sample(probe): net(x, s)) for _ in range(5))[2]
    row = {"paths": args.paths, "standalone": args.standalone, "steps": args.steps, "lr": args.lr,
           "warmup": args.warmup, "clip": args.clip, "freeze_transforms": args.freeze_transforms,
           "share_skip": args.share_skip, "seed": args.seed, "loss_thirds": thirds, "top1": acc,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(row), flush=True)
    if not args.smoke:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
